"""Result downloads from a vendor's URL: limits, error classes, no partial files, no leaked keys."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.downloads import download
from kensa_gql.domain.errors import ContentRejected, ProviderUnavailable
from tests.adapters.origin import Reply, serving
from tests.conftest import free_port

VIDEO = b"\0\0\0\x18ftypmp42" + secrets.token_bytes(200_000)
MP4 = [("Content-Type", "video/mp4")]
KEY = {"Authorization": "Bearer vendor-secret", "x-goog-api-key": "vendor-secret"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def leftovers(work_dir: Path) -> list[Path]:
    return sorted(work_dir.iterdir()) if work_dir.exists() else []


async def test_a_result_is_streamed_to_a_file_with_the_vendors_headers(http: httpx.AsyncClient,
                                                                       tmp_path: Path) -> None:
    async with serving({"/out.mp4": Reply(200, MP4, VIDEO, chunk_size=7000)}) as vendor:
        path = await download(http, f"{vendor.url}/out.mp4", headers=KEY, max_bytes=1 << 20,
                              work_dir=tmp_path)
    assert path.read_bytes() == VIDEO and path.parent == tmp_path
    assert vendor.requests[0].headers["authorization"] == "Bearer vendor-secret"


@pytest.mark.parametrize("kind", ["application/octet-stream", "video/quicktime", "binary/octet-stream"])
async def test_generic_binary_and_other_video_types_are_accepted(kind: str, http: httpx.AsyncClient,
                                                                 tmp_path: Path) -> None:
    async with serving({"/v": Reply(200, [("Content-Type", kind)], VIDEO)}) as vendor:
        path = await download(http, f"{vendor.url}/v", headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert path.stat().st_size == len(VIDEO)


async def test_a_declared_oversize_result_is_refused_before_reading(http: httpx.AsyncClient,
                                                                   tmp_path: Path) -> None:
    async with serving({"/big": Reply(200, MP4, VIDEO)}) as vendor:
        with pytest.raises(ContentRejected, match="larger than 1000 bytes"):
            await download(http, f"{vendor.url}/big", headers={}, max_bytes=1000, work_dir=tmp_path)
    assert leftovers(tmp_path) == []


async def test_a_streamed_oversize_result_is_refused_and_its_partial_file_removed(http: httpx.AsyncClient,
                                                                                  tmp_path: Path) -> None:
    async with serving({"/big": Reply(200, MP4, VIDEO, chunked=True, chunk_size=4096)}) as vendor:
        with pytest.raises(ContentRejected, match="larger than 50000 bytes"):
            await download(http, f"{vendor.url}/big", headers={}, max_bytes=50_000, work_dir=tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("headers", [[("Content-Type", "text/html; charset=utf-8")], []])
async def test_an_html_page_or_untyped_body_is_not_a_video(headers: list[tuple[str, str]],
                                                          http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with serving({"/v": Reply(200, headers, b"<html>log in</html>")}) as vendor:
        with pytest.raises(ContentRejected, match="not a video"):
            await download(http, f"{vendor.url}/v", headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [401, 403, 404, 410])
async def test_an_expired_or_forbidden_link_is_final(status: int, http: httpx.AsyncClient,
                                                     tmp_path: Path) -> None:
    expired = Reply(status, [("Content-Type", "application/xml")], b"<Error>Expired</Error>")
    async with serving({"/v": expired}) as v:
        with pytest.raises(ContentRejected, match=f"HTTP {status}.*expired") as caught:
            await download(http, f"{v.url}/v", headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert not caught.value.retryable
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_a_server_error_or_rate_limit_is_retryable(status: int, http: httpx.AsyncClient,
                                                         tmp_path: Path) -> None:
    async with serving({"/v": Reply(status, [("Content-Type", "text/plain")], b"busy")}) as vendor:
        with pytest.raises(ProviderUnavailable, match=f"HTTP {status}") as caught:
            await download(http, f"{vendor.url}/v", headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert caught.value.retryable
    assert leftovers(tmp_path) == []


async def test_a_refused_connection_is_retryable(http: httpx.AsyncClient, tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match="ConnectError"):
        await download(http, f"http://127.0.0.1:{free_port()}/v", headers={}, max_bytes=1 << 20,
                       work_dir=tmp_path)
    assert leftovers(tmp_path) == []


async def test_a_body_cut_short_is_retryable_and_leaves_nothing(http: httpx.AsyncClient,
                                                                tmp_path: Path) -> None:
    reply = Reply(200, [*MP4, ("Content-Length", str(len(VIDEO) * 2))], VIDEO)
    async with serving({"/v": reply}) as vendor:
        with pytest.raises(ProviderUnavailable):
            await download(http, f"{vendor.url}/v", headers={}, max_bytes=1 << 22, work_dir=tmp_path)
    assert leftovers(tmp_path) == []


async def test_a_slow_drip_hits_the_overall_deadline(http: httpx.AsyncClient, tmp_path: Path) -> None:
    # each chunk comes well within the per-read timeout; the transfer as a whole does not
    reply = Reply(200, MP4, VIDEO, chunk_size=2000, delay_per_chunk=0.05)
    async with serving({"/v": reply}) as vendor:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"did not finish within 0\.5 s"):
            await download(http, f"{vendor.url}/v", headers={}, max_bytes=1 << 20, work_dir=tmp_path,
                           timeout=5, deadline=0.5)
        assert time.monotonic() - started < 3
    assert leftovers(tmp_path) == []


async def test_vendor_headers_follow_a_same_origin_redirect_but_never_another_origin(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with serving({"/signed.mp4": Reply(200, MP4, VIDEO)}) as cdn:
        routes = {"/content": Reply(302, [("Location", "/files/1")]),
                  "/files/1": Reply(307, [("Location", f"{cdn.url}/signed.mp4")])}
        async with serving(routes) as vendor:
            path = await download(http, f"{vendor.url}/content", headers=KEY, max_bytes=1 << 20,
                                  work_dir=tmp_path)
            assert [r.headers.get("x-goog-api-key") for r in vendor.requests] == ["vendor-secret"] * 2
        assert path.read_bytes() == VIDEO
        assert "authorization" not in cdn.requests[0].headers
        assert "x-goog-api-key" not in cdn.requests[0].headers


async def test_redirect_loops_are_cut_off(http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with serving({"/loop": Reply(302, [("Location", "/loop")])}) as vendor:
        with pytest.raises(ContentRejected, match="redirected more than 5 times"):
            await download(http, f"{vendor.url}/loop", headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["ftp://vendor.test/out.mp4", "http:///out.mp4", "/relative/out.mp4"])
async def test_a_result_url_that_is_not_http_is_final(url: str, http: httpx.AsyncClient,
                                                      tmp_path: Path) -> None:
    with pytest.raises(ContentRejected, match="not a valid http"):
        await download(http, url, headers={}, max_bytes=1 << 20, work_dir=tmp_path)
    assert leftovers(tmp_path) == []
