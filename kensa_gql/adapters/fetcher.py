"""Fetching a user-supplied image (a start frame) without opening an SSRF hole.

The host is resolved once, every address it resolves to must be public, and the request goes to
the checked address itself (TLS still verifies the real host name via SNI), so a resolver cannot
answer differently between check and connect. Redirects are followed by hand and each target is
checked the same way. Size, content type and total time are limited.

Stand-in until the storage branch's fetcher is merged: same name, call shape and keyword names;
that one replaces this file (and tests/adapters/providers/test_fetcher_standin.py) on merge.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from kensa_gql.adapters.netguard import resolve as system_resolve
from kensa_gql.domain.errors import BadUserInput, ContentRejected, ProviderUnavailable
from kensa_gql.domain.urls import IPAddress, check_image_url, is_public_address

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_REDIRECTS = 3
TIMEOUT_SECONDS = 20.0

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def fetch_image(client: httpx.AsyncClient, url: str, *, max_bytes: int,
                      timeout: float = TIMEOUT_SECONDS,  # noqa: ASYNC109 - the whole fetch
                      resolver: Resolver = system_resolve) -> tuple[bytes, str]:
    """The image's bytes and content type.

    A bad URL, address, answer or file is ContentRejected; an outage is ProviderUnavailable.
    """
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                response_or_next = await _fetch_once(client, url, max_bytes=max_bytes, resolve=resolver)
                if isinstance(response_or_next, tuple):
                    return response_or_next
                url = response_or_next
    except TimeoutError:
        raise ProviderUnavailable("start image: timed out") from None
    raise ContentRejected("start image: too many redirects")


async def _fetch_once(client: httpx.AsyncClient, url: str, *, max_bytes: int,
                      resolve: Resolver) -> tuple[bytes, str] | str:
    try:
        host = check_image_url(url)
    except BadUserInput as exc:
        raise ContentRejected(exc.message) from None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await _checked_address(host, port, resolve)
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        async with client.stream("GET", _at_address(parts, address), extensions=extensions,
                                 headers={"Host": parts.netloc, "Accept": ", ".join(IMAGE_TYPES)},
                                 follow_redirects=False) as response:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise ContentRejected("start image: redirect without a location")
                return str(urljoin(url, location))
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise ProviderUnavailable(f"start image: HTTP {response.status_code}")
            if response.status_code != 200:
                raise ContentRejected(f"start image: HTTP {response.status_code}")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in IMAGE_TYPES:
                raise ContentRejected(f"start image: content type {kind or 'missing'} is not accepted")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ContentRejected(f"start image: larger than {max_bytes} bytes")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise ContentRejected(f"start image: larger than {max_bytes} bytes")
            return bytes(data), kind
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"start image: {type(exc).__name__}") from exc


async def _checked_address(host: str, port: int, resolve: Resolver) -> IPAddress:
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError, UnicodeError):
            raise ContentRejected("start image: the host name does not resolve") from None
    if not addresses:
        raise ContentRejected("start image: the host name does not resolve")
    if any(not is_public_address(ip) for ip in addresses):
        raise ContentRejected("start image: must not point at a private, loopback or reserved address")
    return addresses[0]


def _at_address(parts: SplitResult, address: IPAddress) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc, fragment="").geturl()
