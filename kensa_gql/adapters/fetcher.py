"""The one way to fetch a user-supplied URL (a start image) without SSRF.

Each hop: check the URL's form (the submit-time rules), resolve the host once, refuse it if any
address is not public, then connect only to those checked addresses: the connection pool's network
backend is pinned to them, so nothing resolves the name a second time (no DNS rebinding), while the
Host header, TLS SNI and certificate verification still use the original name. Redirects are
followed by hand, each new hop checked the same way. The body is read up to a size limit, must be
declared and sniffed as an image, and the whole fetch runs under one deadline.

The shared ``httpx.AsyncClient`` is deliberately not used to connect: its pooled connections,
cookies and any default headers (a vendor's key) must never meet a user-supplied URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from kensa_gql.adapters.netguard import resolve
from kensa_gql.domain.errors import BadUserInput, ContentRejected
from kensa_gql.domain.urls import FIELD, IPAddress, check_image_url, is_public_address, parse_ip_host

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
AddressPolicy = Callable[[IPAddress], bool]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
IMAGE_TYPES = {"image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
               "image/png": "image/png", "image/webp": "image/webp", "image/gif": "image/gif"}
REQUEST_HEADERS = [(b"Accept", b"image/jpeg, image/png, image/webp, image/gif"),
                   (b"Accept-Encoding", b"identity"), (b"User-Agent", b"kensa-gql image fetcher"),
                   (b"Connection", b"close")]


async def fetch_image(client: httpx.AsyncClient | None, url: str, *, max_bytes: int = 10 * 1024 * 1024,
                      timeout: float = 20.0,  # noqa: ASYNC109 - the whole fetch, applied with asyncio.timeout
                      allow: AddressPolicy = is_public_address,
                      resolver: Resolver = resolve, ssl_context: ssl.SSLContext | None = None,
                      ) -> tuple[bytes, str]:
    """Fetch an image from a user-supplied URL; returns its bytes and (sniffed) content type.

    Every refusal or failure is ContentRejected with a message fit for ``errorMessage``. ``allow``
    decides which addresses may be connected to: the default admits only public addresses and
    only tests relax it (to reach loopback servers). ``client`` is accepted for the adapters'
    common call shape and is not used (see the module docstring).
    """
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(url, max_bytes=max_bytes, timeout=timeout, allow=allow, resolver=resolver,
                                ssl_context=ssl_context)
    except TimeoutError:
        raise ContentRejected(f"{FIELD}: fetching the image timed out after {timeout:g} s") from None


async def _fetch(url: str, *, max_bytes: int, timeout: float,  # noqa: ASYNC109 - per operation
                 allow: AddressPolicy, resolver: Resolver, ssl_context: ssl.SSLContext | None,
                 ) -> tuple[bytes, str]:
    for _hop in range(MAX_REDIRECTS + 1):
        target = _checked_url(url, allow)
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = await _checked_addresses(host, port, allow, resolver)
        pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, max_connections=1, retries=0,
                                            network_backend=PinnedBackend(host, addresses))
        request = httpcore.Request(
            "GET", httpcore.URL(scheme=target.raw_scheme, host=target.raw_host, port=target.port,
                                target=target.raw_path),
            headers=[(b"Host", target.netloc), *REQUEST_HEADERS],
            extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}})
        try:
            async with pool:
                response = await pool.handle_async_request(request)
                try:
                    if response.status in REDIRECT_STATUSES:
                        location = _header(response.headers, b"location")
                        if not location:
                            raise ContentRejected(f"{FIELD}: redirect without a Location")
                        url = urljoin(str(target), location)
                        continue
                    return await _read_image(response, max_bytes)
                finally:
                    await response.aclose()
        except httpcore.UnsupportedProtocol:
            raise ContentRejected(f"{FIELD}: must be an absolute http(s) URL") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException, OSError,
                ssl.SSLError) as exc:
            raise ContentRejected(f"{FIELD}: the image could not be fetched ({type(exc).__name__})") from None
    raise ContentRejected(f"{FIELD}: too many redirects (at most {MAX_REDIRECTS})")


def _checked_url(url: str, allow: AddressPolicy) -> httpx.URL:
    try:
        check_image_url(url, allow=allow)
        target = httpx.URL(url)
        target.raw_host.decode("ascii")
    except BadUserInput as exc:
        raise ContentRejected(exc.message) from None
    except (httpx.InvalidURL, UnicodeError):
        raise ContentRejected(f"{FIELD}: not a valid URL") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise ContentRejected(f"{FIELD}: must be an absolute http(s) URL")
    return target


async def _checked_addresses(host: str, port: int, allow: AddressPolicy,
                             resolver: Resolver) -> list[IPAddress]:
    """Resolve once; every address must pass ``allow`` (one bad answer spoils the name)."""
    literal = parse_ip_host(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = _unique(await resolver(host, port))
        except (OSError, UnicodeError, ValueError):
            raise ContentRejected(f"{FIELD}: the host name does not resolve") from None
    if not addresses:
        raise ContentRejected(f"{FIELD}: the host name does not resolve")
    if not all(allow(ip) for ip in addresses):
        raise ContentRejected(f"{FIELD}: must not point at a private, loopback or reserved address")
    return addresses


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(ipaddress.ip_address(str(ip)) for ip in addresses))


async def _read_image(response: httpcore.Response, max_bytes: int) -> tuple[bytes, str]:
    if response.status != 200:
        raise ContentRejected(f"{FIELD}: the image URL answered HTTP {response.status}")
    declared = (_header(response.headers, b"content-type") or "").split(";")[0].strip().lower()
    if declared not in IMAGE_TYPES:
        raise ContentRejected(f"{FIELD}: not an image (content type {declared or 'missing'}; "
                              "JPEG, PNG, WebP or GIF expected)")
    length = _header(response.headers, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise ContentRejected(f"{FIELD}: the image is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > max_bytes:
            raise ContentRejected(f"{FIELD}: the image is larger than {max_bytes} bytes")
    kind = sniff_image(bytes(body[:16]))
    if kind is None:
        raise ContentRejected(f"{FIELD}: the content is not a JPEG, PNG, WebP or GIF image")
    # The bytes decide the type: servers often label images loosely (a JPEG sent as image/png).
    return bytes(body), kind


def sniff_image(head: bytes) -> str | None:
    """The image type its magic bytes show, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked addresses of one host and nowhere else; never resolves anything."""

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._addresses = list(addresses)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None, socket_options: Any = None,
                          ) -> httpcore.AsyncNetworkStream:
        if host != self._host:
            raise httpcore.ConnectError("refusing to connect to a host that was not checked")
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for ip in self._addresses:  # literal addresses: the inner backend does no DNS lookup
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
