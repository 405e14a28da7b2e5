"""Result downloads: the vendor's key stays on the vendor's origin across redirects."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.downloads import download
from kensa_gql.domain.errors import ContentRejected

KEY = {"x-goog-api-key": "AIza-secret"}


async def test_headers_go_only_to_the_origin_they_were_given_for(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("x-goog-api-key")))
        if request.url.path == "/v1beta/files/a:download":
            return httpx.Response(302, headers={"location": "/v1beta/files/a:redirected"})
        if request.url.path == "/v1beta/files/a:redirected":
            return httpx.Response(307, headers={"location": "https://storage.example.net/signed/a.mp4"})
        return httpx.Response(200, content=b"\0\0\0\x18ftypmp42", headers={"content-type": "video/mp4"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        path = await download(http, "https://api.example.com/v1beta/files/a:download", headers=KEY,
                              max_bytes=1000, work_dir=tmp_path)
    assert path.read_bytes().startswith(b"\0\0\0\x18ftyp")
    assert [key for _, key in seen] == ["AIza-secret", "AIza-secret", None]


async def test_a_redirect_to_a_non_http_scheme_is_refused(tmp_path: Path) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(302, headers={"location": "file:///etc/passwd"}))) as http:
        with pytest.raises(ContentRejected):
            await download(http, "https://api.example.com/v.mp4", headers={}, max_bytes=1000,
                           work_dir=tmp_path)
    assert os.listdir(tmp_path) == []  # no partial file left behind


@pytest.mark.parametrize("status", [403, 404])
async def test_an_expired_link_is_final(tmp_path: Path, status: int) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(status))) as http:
        with pytest.raises(ContentRejected, match="expired"):
            await download(http, "https://cdn.example.com/v.mp4", headers={}, max_bytes=1000,
                           work_dir=tmp_path)
