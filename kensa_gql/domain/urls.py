"""Rules for user-supplied URLs (no SSRF): what a start image URL may look like and point at."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from kensa_gql.domain.errors import BadUserInput

MAX_URL_LENGTH = 2048
FIELD = "startImageUrl"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (never loopback, private, metadata...)."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
        if ip.teredo is not None:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local
                                 or ip.is_loopback or ip.is_private or ip.is_unspecified)

def check_image_url(url: str, *, allow: Callable[[IPAddress], bool] = is_public_address,
                    field: str = FIELD) -> str:
    """Check the URL's form and, when it is an IP literal, its address. Returns the host.

    A host name is checked again after resolution (adapters) and at fetch time, since
    only the address actually connected to matters. ``allow`` is only ever relaxed by tests.
    ``field`` names the input in messages (webhook URLs follow the same rules).
    """
    if len(url) > MAX_URL_LENGTH:
        raise BadUserInput(f"{field}: at most {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUserInput(f"{field}: not a valid URL", field=field) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUserInput(f"{field}: must be an absolute http(s) URL", field=field)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BadUserInput(f"{field}: must not contain credentials", field=field)
    if port == 0:
        raise BadUserInput(f"{field}: not a valid URL", field=field)
    host = parts.hostname
    if any(ch.isspace() for ch in url):
        raise BadUserInput(f"{field}: not a valid URL", field=field)
    ip = parse_ip_host(host)
    if ip is not None and not allow(ip):
        raise BadUserInput(f"{field}: must not point at a private, loopback or reserved address", field=field)
    if ip is None and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
        raise BadUserInput(f"{field}: must not point at a private, loopback or reserved address", field=field)
    return host

def parse_ip_host(host: str) -> IPAddress | None:
    """The host as an IP address when it is one, including legacy forms like ``2130706433``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    # inet_aton-style forms (decimal, octal, hex, short dotted) that some resolvers accept.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None
