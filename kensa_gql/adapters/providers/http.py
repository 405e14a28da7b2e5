"""One vendor's HTTP calls: base URL, auth headers, bounded retries with backoff, redacted errors.

Every adapter talks to its vendor through a ``VendorHttp``, so retries, ``Retry-After`` and the
rule that an API key never reaches a log line or an error message live in one place.

Retried: connection failures and timeouts, 408, 429 and 5xx, with exponential backoff and jitter,
at most ``RetryPolicy.attempts`` times. A ``Retry-After`` is honoured as given; one longer than
``max_retry_after`` is not slept here but handed to the caller in ``ProviderUnavailable``, so the
runner can fail over instead of holding the task.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from kensa_gql.domain.errors import ContentRejected, ProviderError, ProviderUnavailable
from kensa_gql.domain.ports import ProviderJob
from kensa_gql.domain.videos import FailureCode

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 500
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3             # calls in total, the first included
    base_delay: float = 0.5       # seconds; doubled per retry
    max_delay: float = 8.0
    max_retry_after: float = 30.0


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After``: delta seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class VendorHttp:
    def __init__(self, http: httpx.AsyncClient, *, vendor: str, base_url: str, headers: Mapping[str, str],
                 secret: str, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._headers = dict(headers)
        self._secret = secret
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng

    @property
    def origin(self) -> tuple[str, str, int | None]:
        return origin_of(self.base_url)

    async def send(self, method: str, path: str, *, json: Any = None, data: Mapping[str, str] | None = None,
                   files: Mapping[str, tuple[str, bytes, str]] | None = None,
                   headers: Mapping[str, str] | None = None,
                   final: Callable[[httpx.Response], bool] | None = None) -> httpx.Response:
        """Send with retries; return the first non-retryable response (the caller maps 4xx).

        ``final`` marks a retryable-looking response that retrying cannot fix (e.g. an exhausted
        quota answered with 429); it is returned at once.
        """
        url = self.base_url + path
        merged = {**self._headers, **(headers or {})}
        attempts = max(1, self._policy.attempts)
        for attempt in range(attempts):
            wait: float | None = None
            try:
                response = await self._http.request(method, url, json=json, data=data, files=files,
                                                    headers=merged)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__} talking to the {self.vendor} API"
            else:
                if not is_retryable_status(response.status_code) or (final is not None and final(response)):
                    return response
                problem = f"HTTP {response.status_code}: {self.message(response)}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is not None and wait > self._policy.max_retry_after:
                raise ProviderUnavailable(f"{self.vendor}: {problem}", retry_after=wait)
            if attempt + 1 == attempts:
                raise ProviderUnavailable(f"{self.vendor}: {problem}", retry_after=wait)
            delay = self._delay(attempt, wait)
            log.warning("%s %s %s failed (%s); retry %d/%d in %.2fs", self.vendor, method, path, problem,
                        attempt + 1, attempts - 1, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Honour the vendor's wait; a little jitter on top keeps our workers from arriving together.
            return retry_after + self._rng() * min(1.0, retry_after * 0.1)
        ceiling: float = min(self._policy.max_delay, self._policy.base_delay * 2.0 ** attempt)
        return ceiling / 2 + self._rng() * ceiling / 2

    def json(self, response: httpx.Response) -> dict[str, Any]:
        """The body as a JSON object; anything else is the vendor misbehaving (retryable)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{self.vendor}: unexpected response (HTTP {response.status_code}, "
                                      "not a JSON object)")
        return body

    def message(self, response: httpx.Response) -> str:
        """The vendor's own error text from the usual envelopes, redacted and shortened."""
        try:
            body = response.json()
        except ValueError:
            return self.clean(response.reason_phrase or "no details")
        return self.clean(error_text(body) or response.reason_phrase or "no details")

    def clean(self, text: str) -> str:
        """Remove the API key (vendors sometimes echo it) and cap the length."""
        if self._secret:
            text = text.replace(self._secret, REDACTED)
        return text[:MAX_MESSAGE_CHARS]

    def failure(self, response: httpx.Response, *, polling: bool, unavailable_codes: tuple[str, ...] = (),
                policy_codes: tuple[str, ...] = ()) -> ProviderError:
        """The error for a non-retryable, non-2xx answer.

        Refusals of the request itself (400, 413, 422) are final; authentication, quota and
        permission problems (401, 402, 403) and an unknown model make this provider unusable, so
        the runner fails over; a task the vendor no longer knows (404 while polling) is final.
        A vendor code listed in ``unavailable_codes`` (quota or billing on a 400) fails over too;
        a refusal whose code contains one of ``policy_codes`` is CONTENT_POLICY, other refusals
        INVALID_INPUT.
        """
        status = response.status_code
        text = f"{self.vendor}: {self.message(response)} (HTTP {status})"
        code = error_code(_safe_json(response))
        if code is not None and code in unavailable_codes:
            return ProviderUnavailable(text)
        if status in (401, 402, 403):
            return ProviderUnavailable(text)
        if status == 404:
            return ProviderError(text) if polling else ProviderUnavailable(text)
        if status in (400, 409, 413, 415, 422):
            policy = code is not None and any(p in code for p in policy_codes)
            return ContentRejected(text, failure=FailureCode.CONTENT_POLICY if policy else FailureCode.INVALID_INPUT)
        return ProviderError(text)


def failure_of(code: str, *, retryable: bool, policy: tuple[str, ...] = (),
               invalid: tuple[str, ...] = ()) -> FailureCode:
    """A vendor's task failure code on our taxonomy: its moderation codes (``policy``, matched as
    substrings), its input refusals (``invalid``, as prefixes), then passing or not."""
    if code and any(p in code for p in policy):
        return FailureCode.CONTENT_POLICY
    if code and code.startswith(invalid) and invalid:
        return FailureCode.INVALID_INPUT
    return FailureCode.PROVIDER_UNAVAILABLE if retryable else FailureCode.PROVIDER_ERROR


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def error_code(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    for holder in (inner, body):
        if isinstance(holder, dict):
            for key in ("code", "status", "type"):  # Google: "status"; EvoLink: numeric code + "type"
                code = holder.get(key)
                if isinstance(code, str) and code:
                    return code
    return None


def error_text(body: Any) -> str | None:
    """The message from ``{"error": {"message", "code"}}`` (OpenAI, EvoLink, Ark, Google) or
    ``{"code", "message"}`` (DashScope)."""
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    if isinstance(inner, str) and inner:
        return inner
    holder = inner if isinstance(inner, dict) else body
    message = holder.get("message")
    code = holder.get("code") if isinstance(holder.get("code"), str) else holder.get("status")
    if isinstance(message, str) and message:
        return f"{code}: {message}" if isinstance(code, str) and code and code not in message else message
    return code if isinstance(code, str) and code else None


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def cannot_make(vendor: str, job: ProviderJob) -> ValueError:
    """A job the router should never have sent here (``supports`` said no)."""
    return ValueError(f"{vendor} cannot make {job.model} {job.duration}s {job.resolution} {job.aspect_ratio}")


def as_object(value: Any) -> dict[str, Any]:
    """A JSON object from a vendor, or an empty one: vendor JSON is never trusted to have a shape."""
    return value if isinstance(value, dict) else {}


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def result_url(url: Any) -> str | None:
    """A vendor's result link if it is an absolute http(s) URL (never file:, data: or relative)."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.hostname else None
