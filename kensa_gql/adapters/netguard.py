"""Resolving user-supplied host names, so a name cannot smuggle in a private address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.urls import FIELD, is_public_address, parse_ip_host

RESOLVE_TIMEOUT_SECONDS = 3.0


async def resolve(host: str, port: int = 443) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                   RESOLVE_TIMEOUT_SECONDS)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_public_host(host: str, field: str = FIELD) -> None:
    """Refuse a host name that resolves to any non-public address.

    A name that does not resolve at all is let through here: nothing can be fetched from it,
    and every fetch checks the address it actually connects to again.
    """
    if parse_ip_host(host) is not None:
        return  # literal addresses were checked by the domain rules already
    try:
        addresses = await resolve(host)
    except (OSError, TimeoutError, UnicodeError):
        return
    if any(not is_public_address(ip) for ip in addresses):
        raise BadUserInput(f"{field}: must not point at a private, loopback or reserved address", field=field)
