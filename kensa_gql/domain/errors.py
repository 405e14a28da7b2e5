"""The error tree. Every expected failure is one of these, with a stable code.

    KensaError
    ├── BadUserInput            BAD_USER_INPUT           (names the field)
    ├── Unauthenticated         UNAUTHENTICATED
    ├── InsufficientCredits     INSUFFICIENT_CREDITS
    ├── NotFound                NOT_FOUND
    ├── Conflict                CONFLICT
    ├── IdempotencyKeyReused    IDEMPOTENCY_KEY_REUSED
    ├── RateLimited             RATE_LIMITED             (a budget per minute is spent; retry_after)
    ├── PayloadTooLarge         PAYLOAD_TOO_LARGE
    ├── Unavailable             UNAVAILABLE              (a backing service cannot serve now; retry_after)
    │   └── StorageUnavailable      (finished media cannot be written: read-only, full, unreachable)
    └── ProviderError           PROVIDER_ERROR           (retryable or not; never shown raw to clients)
        ├── ProviderUnavailable     (connection, 5xx, 429, quota, auth: try again or fail over)
        └── ContentRejected         (the vendor refused the content itself: fail, release)

REST renders each as ``{"success": false, "error": {"code", "message"}}`` with a status from one
table; GraphQL as an error whose ``extensions.code`` is the same code.
"""

from __future__ import annotations

from kensa_gql.domain.videos import FailureCode


class KensaError(Exception):
    """Base of every expected error; ``code`` is stable and part of the public contract."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(KensaError):
    """The request is malformed or asks for something the model does not offer."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(KensaError):
    """No valid API key came with the request."""

    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "a valid API key is required") -> None:
        super().__init__(message)


class InsufficientCredits(KensaError):
    """The available balance does not cover the price."""

    code = "INSUFFICIENT_CREDITS"

    def __init__(self, *, required: int, available: int) -> None:
        super().__init__(f"insufficient credits: {required} required, {available} available")
        self.required = required
        self.available = available


class NotFound(KensaError):
    """Unknown, deleted, or somebody else's: deliberately indistinguishable."""

    code = "NOT_FOUND"

    def __init__(self, what: str = "video") -> None:
        super().__init__(f"{what} not found")


class Conflict(KensaError):
    """The same operation is already in progress."""

    code = "CONFLICT"


class IdempotencyKeyReused(KensaError):
    """An idempotency key was sent again with a different request body."""

    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")


class RateLimited(KensaError):
    """Too many requests for the caller's budget; try again after ``retry_after`` s."""

    code = "RATE_LIMITED"

    def __init__(self, message: str = "rate limit exceeded", *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class PayloadTooLarge(KensaError):
    """The request body is larger than the endpoint takes; refused before it is all read."""

    code = "PAYLOAD_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request is larger than {limit} bytes")
        self.limit = limit


class Unavailable(KensaError):
    """A backing service (the database, media storage) cannot serve now; try again after ``retry_after`` s."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class StorageUnavailable(Unavailable):
    """Finished media could not be written where it is published (the runner retries, then fails)."""


class ProviderError(KensaError):
    """A video provider failed; ``retryable`` says whether trying again may help."""

    code = "PROVIDER_ERROR"
    retryable = False
    failure = FailureCode.PROVIDER_ERROR  # what the video's failure code becomes if this ends it

    def __init__(self, message: str, *, retry_after: float | None = None,
                 failure: FailureCode | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        if failure is not None:
            self.failure = failure


class ProviderUnavailable(ProviderError):
    """The provider cannot take the request now (network, 5xx, 429, quota, auth)."""

    retryable = True
    failure = FailureCode.PROVIDER_UNAVAILABLE


class ContentRejected(ProviderError):
    """The provider refused the content itself (policy, invalid parameters): final."""

    retryable = False
    failure = FailureCode.INVALID_INPUT  # adapters say CONTENT_POLICY where the vendor does


class InvalidTransition(KensaError):
    """A status change the state machine does not allow (a bug or a lost race, never user input)."""

    code = "CONFLICT"
