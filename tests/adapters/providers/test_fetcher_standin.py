"""The stand-in safe fetcher for start images: no private addresses, before or after redirects.

Replaced, with kensa_gql/adapters/fetcher.py, by the storage branch's fetcher and tests on merge.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import httpx
import pytest

from kensa_gql.adapters.fetcher import fetch_image
from kensa_gql.domain.errors import ContentRejected, ProviderUnavailable
from kensa_gql.domain.urls import IPAddress

PUBLIC = "93.184.216.34"
DNS = {"images.example.com": [PUBLIC], "cdn.example.com": ["93.184.216.35"],
       "sneaky.example.com": ["10.0.0.7"],
       "mixed.example.com": [PUBLIC, "127.0.0.1"]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


async def resolve(host: str, port: int) -> list[IPAddress]:
    if host not in DNS:
        raise OSError("Name or service not known")
    return [ipaddress.ip_address(a) for a in DNS[host]]


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def image(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


async def test_connects_to_the_checked_address_with_the_real_host_name() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return image(request)

    async with client(handler) as http:
        data, kind = await fetch_image(http, "https://images.example.com/a/first.png?v=1", max_bytes=1000,
                                       resolver=resolve)
    assert (data, kind) == (PNG, "image/png")
    [request] = seen
    assert request.url.host == PUBLIC and request.url.path == "/a/first.png" and request.url.query == b"v=1"
    assert request.headers["host"] == "images.example.com"
    assert request.extensions["sni_hostname"] == "images.example.com"  # TLS verifies the real name


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png", "http://[::1]/x.png", "http://169.254.169.254/latest/meta-data",
    "http://localhost/x.png", "https://sneaky.example.com/x.png", "https://mixed.example.com/x.png",
    "file:///etc/passwd", "https://user:pw@images.example.com/x.png",
])
async def test_refuses_private_loopback_and_metadata_addresses(url: str) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return image(request)

    async with client(handler) as http:
        with pytest.raises(ContentRejected):
            await fetch_image(http, url, max_bytes=1000, resolver=resolve)
    assert calls == []


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/iam",
                                    "https://sneaky.example.com/x.png", "http://127.0.0.1:8000/admin"])
async def test_refuses_redirects_to_private_addresses(target: str) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"location": target})

    async with client(handler) as http:
        with pytest.raises(ContentRejected):
            await fetch_image(http, "https://images.example.com/x.png", max_bytes=1000, resolver=resolve)
    assert hosts == [PUBLIC]  # the private target was never contacted


async def test_follows_a_redirect_to_another_public_host() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.headers["host"])
        if request.headers["host"] == "images.example.com":
            return httpx.Response(301, headers={"location": "https://cdn.example.com/x.png"})
        return image(request)

    async with client(handler) as http:
        assert (await fetch_image(http, "https://images.example.com/x.png", max_bytes=1000,
                                  resolver=resolve))[0] == PNG
    assert hosts == ["images.example.com", "cdn.example.com"]


async def test_gives_up_after_too_many_redirects() -> None:
    async with client(lambda r: httpx.Response(302, headers={"location": "/again"})) as http:
        with pytest.raises(ContentRejected, match="redirects"):
            await fetch_image(http, "https://images.example.com/x.png", max_bytes=1000, resolver=resolve)


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(200, content=b"<html>", headers={"content-type": "text/html"}), ContentRejected),
    (httpx.Response(200, content=PNG * 20, headers={"content-type": "image/png"}), ContentRejected),
    (httpx.Response(404), ContentRejected),
    (httpx.Response(503), ProviderUnavailable),
])
async def test_limits_type_size_and_status(response: httpx.Response, error: type[Exception]) -> None:
    async with client(lambda r: response) as http:
        with pytest.raises(error):
            await fetch_image(http, "https://images.example.com/x.png", max_bytes=1000, resolver=resolve)


async def test_an_unresolvable_host_is_refused() -> None:
    async with client(image) as http:
        with pytest.raises(ContentRejected, match="resolve"):
            await fetch_image(http, "https://nowhere.example.com/x.png", max_bytes=1000, resolver=resolve)


async def test_a_slow_server_times_out() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return image(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await fetch_image(http, "https://images.example.com/x.png", max_bytes=1000, resolver=resolve,
                              timeout=0.1)
