"""Outbound webhooks: which video change is which event, secrets, and when a failed delivery is retried.

Pure rules; the store (adapters/db/webhooks_store.py), the use cases (services/webhook_endpoints.py,
services/webhook_events.py) and the sender (webhook_worker.py) apply them.
"""

from __future__ import annotations

import base64
import enum
import random
import secrets
import time
from dataclasses import dataclass

from kensa_gql.domain.videos import VideoStatus


class WebhookEvent(enum.StrEnum):
    STARTED = "video.started"
    PROGRESS = "video.progress"
    COMPLETED = "video.completed"
    FAILED = "video.failed"
    CANCELLED = "video.cancelled"


ALL_EVENTS: tuple[WebhookEvent, ...] = tuple(WebhookEvent)
PROGRESS_INTERVAL_MS = 5_000       # at most one video.progress per video in this long
RESPONSE_KEEP_BYTES = 1024         # of the receiver's answer, kept for the delivery log
ROTATION_OVERLAP_MS = 24 * 3_600_000  # a rotated-out secret keeps signing beside the new one this long
DISABLE_AFTER_MS = 5 * 24 * 3_600_000  # an endpoint failing this long without one success is disabled
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_ENDPOINTS_PER_ACCOUNT = 20


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"        # waiting for its (next) attempt
    SUCCEEDED = "SUCCEEDED"    # the receiver answered 2xx
    FAILED = "FAILED"          # every attempt of the retry window failed (or its endpoint is gone)


def event_for(before: VideoStatus, after: VideoStatus) -> WebhookEvent | None:
    """The event a committed change from ``before`` to ``after`` is, if any.

    Terminal statuses map by name, so a status added later (CANCELLED) needs no change here.
    """
    if after.value == "COMPLETED":
        return WebhookEvent.COMPLETED
    if after.value == "FAILED":
        return WebhookEvent.FAILED
    if after.value == "CANCELLED":
        return WebhookEvent.CANCELLED
    if after.value == "GENERATING" and before.value == "PENDING":
        return WebhookEvent.STARTED
    if after.value in ("GENERATING", "UPLOADING"):
        return WebhookEvent.PROGRESS
    return None


def parse_events(names: list[str] | None) -> tuple[WebhookEvent, ...]:
    """Event names as given by a client (None or empty: all of them); ValueError names a bad one."""
    if not names:
        return ALL_EVENTS
    chosen: list[WebhookEvent] = []
    for name in names:
        try:
            event = WebhookEvent(name)
        except ValueError:
            raise ValueError(f"unknown event {name!r}; one of {', '.join(ALL_EVENTS)}") from None
        if event not in chosen:
            chosen.append(event)
    return tuple(chosen)


def iso_time(ms: int) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``, as every time in the API is written."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)) + f"{millis:03d}Z"


def new_secret() -> str:
    """A ``whsec_`` secret: 32 random bytes, base64 (the spec asks for 24 to 64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_event_id() -> str:
    """A ``webhook-id``: unique per event and destination, the same on every retry."""
    return "msg_" + secrets.token_urlsafe(18)


def new_endpoint_id() -> str:
    return "we_" + secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter: first, first*factor, ... each at most ``max_delay``,
    until ``window`` after the event; an attempt that would come later is not made."""

    first_delay_ms: int = 5_000
    factor: float = 4.0
    max_delay_ms: int = 6 * 3_600_000
    window_ms: int = 24 * 3_600_000

    def next_attempt(self, *, attempts: int, created_at_ms: int, now_ms: int,
                     rng: random.Random | None = None) -> int | None:
        """When to try again after ``attempts`` failed tries, or None: give up (FAILED)."""
        delay = min(self.first_delay_ms * self.factor ** max(0, attempts - 1), self.max_delay_ms)
        jitter = (rng or random).uniform(0.8, 1.2)
        at = now_ms + int(delay * jitter)
        return None if at > created_at_ms + self.window_ms else at


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An account's webhook endpoint (its secrets never leave the services except where shown once)."""

    id: int
    public_id: str
    user_id: int
    url: str
    events: tuple[WebhookEvent, ...]
    secret: str
    previous_secret: str | None
    previous_secret_until_ms: int | None
    disabled_at_ms: int | None
    disabled_reason: str | None
    failing_since_ms: int | None
    created_at_ms: int

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The current secret, and the previous one while its overlap lasts."""
        if self.previous_secret and self.previous_secret_until_ms and now_ms < self.previous_secret_until_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one destination: an account endpoint, or a video's own ``webhookUrl``."""

    id: int
    event_id: str
    user_id: int
    endpoint_id: int | None       # None for a video's own webhookUrl, or once the endpoint is deleted
    endpoint_public_id: str | None
    to_endpoint: bool
    video_uuid: str | None
    url: str
    event_type: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at_ms: int | None
    last_status_code: int | None
    last_response: str | None
    last_error: str | None
    created_at_ms: int
    delivered_at_ms: int | None
