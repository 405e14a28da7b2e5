"""The interactive page for /api/v1 (served from the package), and the contract check itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Serve, User
from tests.openapi_contract import problems


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


async def test_the_docs_page_and_its_assets_are_served_from_the_package_with_no_cdn(serve: Serve) -> None:
    server = serve(run_worker=False)
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/api/v1/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and not [a for a in assets if "//" in a]  # relative: nothing from elsewhere
        for asset in assets:
            served = await client.get(f"/api/v1/{asset}")  # resolved against /api/v1/docs
            assert served.status_code == 200 and len(served.content) > 100, asset
        init = (await client.get("/api/v1/docs/kensa-docs.js")).text
        assert 'url: "openapi.json"' in init and "validatorUrl: null" in init
        assert (await client.get("/api/v1/openapi.json")).status_code == 200
    assert server.contract.checked >= 1


async def test_every_rest_response_of_a_server_is_checked_against_the_document(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False)
    user: User = await make_user()
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        for target in ("/api/v1/video/list", "/api/v1/credit/history", "/api/v1/video/task?uuid=x",
                       "/api/v1/video/0b8c5d3e-0000-4000-8000-000000000000", "/api/v1/config/models"):
            await client.get(target)
    assert server.contract.checked == 5 and server.contract.violations == []


def test_the_check_finds_what_the_document_does_not_admit() -> None:
    ok = b'{"success": true, "data": {"uuid": "u", "status": "PENDING", "progress": 0}}'
    headers = {"content-type": "application/json", "ratelimit": '"requests";r=1;t=2'}
    assert problems("GET", "/api/v1/video/task", 200, headers, ok) == []
    assert problems("GET", "/api/v1/video/task", 418, headers, ok) == [
        "GET /api/v1/video/task -> 418: status not documented"]
    assert problems("GET", "/api/v1/video/task", 200, headers, ok.replace(b"PENDING", b"NAPPING"))
    assert problems("GET", "/api/v1/video/task", 200, {**headers, "ratelimit": "lots"}, ok)
    refused = b'{"success": false, "error": {"code": "RATE_LIMITED", "message": "slow down"}}'
    assert problems("GET", "/api/v1/video/list", 429, headers, refused) == [
        "GET /api/v1/video/list -> 429: no Retry-After"]
    assert problems("GET", "/api/v1/video/list", 429, {**headers, "retry-after": "3"}, refused) == []
    assert problems("GET", "/api/v1/nowhere", 404, headers, b"{}") == []  # not the document's to describe
