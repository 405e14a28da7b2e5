"""Sending one signed webhook without SSRF, and the rules a webhook URL must meet.

The URL rules are those of ``startImageUrl`` (domain/urls.py), plus https unless
``KENSA_WEBHOOKS_ALLOW_HTTP``; non-public addresses are refused unless
``KENSA_WEBHOOKS_ALLOW_PRIVATE`` (development and tests). At every send the host is resolved
once, every address checked, and the connection pinned to those addresses (adapters/fetcher.py's
``PinnedBackend``), so a name cannot be re-pointed inward between check and connect. Redirects
are never followed: a 3xx is a failed attempt, as the Standard Webhooks spec says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
import httpx
from standardwebhooks.webhooks import Webhook

from kensa_gql.adapters.fetcher import PinnedBackend, Resolver
from kensa_gql.adapters.netguard import resolve
from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.urls import IPAddress, check_image_url, is_public_address, parse_ip_host
from kensa_gql.domain.webhooks import RESPONSE_KEEP_BYTES

FIELD = "url"
USER_AGENT = b"kensa-gql webhooks"


class WebhookUrlGuard:
    """Whether a webhook URL may be stored and sent to (``check``), and its checked addresses."""

    def __init__(self, *, allow_http: bool = False, allow_private: bool = False,
                 resolver: Resolver = resolve) -> None:
        self.allow_http = allow_http
        self.allow_private = allow_private
        self._resolver = resolver

    def _allowed(self, ip: IPAddress) -> bool:
        return self.allow_private or is_public_address(ip)

    def check_form(self, url: str, field: str = FIELD) -> str:
        """The URL's form (and its address when it is a literal); returns the host."""
        if self.allow_private and _local_name(url):
            # Development: a local name (localhost) is the point; the other form rules still hold.
            check_image_url(url.replace(httpx.URL(url).host, "local.test", 1), field=field)
            host = httpx.URL(url).host
        else:
            host = check_image_url(url, allow=self._allowed, field=field)
        if not url.lower().startswith("https://") and not self.allow_http:
            raise BadUserInput(f"{field}: must be an https URL", field=field)
        return host

    async def addresses(self, url: str, field: str = FIELD, *, must_resolve: bool = True) -> list[IPAddress]:
        """Every address the URL's host resolves to, all allowed; BadUserInput otherwise."""
        host = self.check_form(url, field)
        literal = parse_ip_host(host)
        if literal is not None:
            return [literal]
        port = httpx.URL(url).port or (443 if url.lower().startswith("https") else 80)
        try:
            found = list(dict.fromkeys(ipaddress.ip_address(str(ip)) for ip in await self._resolver(host, port)))
        except (OSError, UnicodeError, ValueError, TimeoutError):
            found = []
        if not found:
            if must_resolve:
                raise BadUserInput(f"{field}: the host name does not resolve", field=field)
            return []
        if not all(self._allowed(ip) for ip in found):
            raise BadUserInput(f"{field}: must not point at a private, loopback or reserved address", field=field)
        return found

    async def check(self, url: str, field: str = FIELD) -> None:
        """At creation: the form and, if the name resolves now, where it points."""
        await self.addresses(url, field, must_resolve=False)


def _local_name(url: str) -> bool:
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    return host == "localhost" or host.endswith((".localhost", ".local", ".internal"))


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send came to: a status code (and the start of the body), or an error."""

    status_code: int | None
    response: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secrets: list[str], event_id: str, timestamp: datetime, payload: str) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per secret, space-separated."""
    return " ".join(Webhook(secret).sign(event_id, timestamp, payload) for secret in secrets)


class WebhookSender:
    """POSTs signed payloads; never raises for the receiver's or the network's failures."""

    def __init__(self, guard: WebhookUrlGuard, *, timeout: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._guard = guard
        self._timeout = timeout
        self._ssl_context = ssl_context

    async def send(self, url: str, *, event_id: str, payload: str, secrets: list[str],
                   now: datetime | None = None) -> Attempt:
        try:
            addresses = await self._guard.addresses(url)
        except BadUserInput as exc:
            return Attempt(None, None, f"refused: {exc.message}")
        target = httpx.URL(url)
        sent_at = now or datetime.now(UTC)
        body = payload.encode()
        headers = [(b"Host", target.netloc), (b"User-Agent", USER_AGENT), (b"Content-Type", b"application/json"),
                   (b"Content-Length", str(len(body)).encode()), (b"webhook-id", event_id.encode()),
                   (b"webhook-timestamp", str(int(sent_at.timestamp())).encode()),
                   (b"webhook-signature", sign(secrets, event_id, sent_at, payload).encode()),
                   (b"Connection", b"close")]
        host = target.raw_host.decode("ascii")
        pool = httpcore.AsyncConnectionPool(ssl_context=self._ssl_context, max_connections=1, retries=0,
                                            network_backend=PinnedBackend(host, addresses))
        t = self._timeout
        request = httpcore.Request("POST", httpcore.URL(scheme=target.raw_scheme, host=target.raw_host,
                                                        port=target.port, target=target.raw_path),
                                   headers=headers, content=body,
                                   extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}})
        try:
            async with asyncio.timeout(t), pool:
                response = await pool.handle_async_request(request)
                try:
                    kept = bytearray()
                    async for chunk in response.aiter_stream():
                        kept += chunk
                        if len(kept) >= RESPONSE_KEEP_BYTES:
                            break
                finally:
                    await response.aclose()
                text = bytes(kept[:RESPONSE_KEEP_BYTES]).decode("utf-8", "replace")
                return Attempt(response.status, text, None)
        except TimeoutError:
            return Attempt(None, None, f"timed out after {t:g} s")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException,
                httpcore.UnsupportedProtocol, OSError, ssl.SSLError) as exc:
            return Attempt(None, None, f"could not be sent ({type(exc).__name__})")
