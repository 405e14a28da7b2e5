"""One table from error code to HTTP status, for both transports.

REST answers with the status; GraphQL reads it to tell the client's errors (a 4xx: the message is
shown) from ours (a 5xx: masked). Neither transport imports the other.
"""

from __future__ import annotations

HTTP_STATUS: dict[str, int] = {
    "BAD_USER_INPUT": 400,
    "UNAUTHENTICATED": 401,
    "INSUFFICIENT_CREDITS": 402,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "RATE_LIMITED": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "UNAVAILABLE": 503,
}

# 5xx codes that still tell the client something true and useful: try again later (Retry-After).
_SHOWN_SERVER_CODES = frozenset({"UNAVAILABLE"})


def is_public(code: str) -> bool:
    """True if an error with this code is the client's business (a 4xx, or "come back later"), so
    its message is shown."""
    return HTTP_STATUS.get(code, 500) < 500 or code in _SHOWN_SERVER_CODES
