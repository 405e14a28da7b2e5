"""The web console and the offline GraphiQL page are served from the package, with nothing from the internet.

The browser itself drives the console in tests/e2e/test_console.py; here: what is served where,
that no shipped page or script points at another host, that the vendored files are the versions
pinned elsewhere, and that KENSA_CONSOLE=false takes the console away.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import strawberry

from kensa_gql.api import console
from kensa_gql.app import create_app
from kensa_gql.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STATIC = console.STATIC
OWN_FILES = [*sorted((STATIC / "app").iterdir()), STATIC / "graphiql.html"]
WEB_FILES = [p for p in STATIC.rglob("*") if p.suffix in (".html", ".js", ".css")]
# Any scheme-qualified URL to a host other than this machine.
EXTERNAL_URL = re.compile(r"\b(?:https?|wss?):\/\/(?!127\.0\.0\.1|localhost)[\w.-]+", re.IGNORECASE)
# What makes a browser fetch from elsewhere: src/href attributes, CSS url() and @import.
EXTERNAL_LOAD = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""",
                           re.IGNORECASE)
ASSET = re.compile(r"""(?:src|href)="(/console/[^"]+)\"""")


def app_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/kensa.db", media_dir=tmp_path / "media",
                    **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app_settings(tmp_path)) as c:
        yield c


async def test_the_console_is_served_at_the_root_with_every_asset_it_references(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(page.text)
    scripts = (STATIC / "app" / "app.js").read_text()
    # The modules app.js imports come through the same mount.
    assets += [f"/console/{name}" for name in re.findall(r'from "\./([\w.]+)"', scripts)]
    assert {"/console/console.css", "/console/app.js", "/console/vendor/graphql-ws/graphql-ws.min.js"} <= set(assets)
    for asset in assets:
        r = await client.get(asset)
        assert r.status_code == 200, asset
        assert r.headers["content-type"].split(";")[0] in ("text/css", "text/javascript", "application/javascript")


@pytest.mark.parametrize("fastpath", [True, False])
async def test_graphiql_loads_its_assets_from_the_gateway(tmp_path: Path, fastpath: bool) -> None:
    async with client_for(app_settings(tmp_path, graphql_fastpath=fastpath)) as c:
        page = await c.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "Authorization" in page.text and "connectionParams" in page.text
        assets = ASSET.findall(page.text)
        assert "/console/vendor/graphiql/graphiql.min.js" in assets
        for asset in assets:
            assert (await c.get(asset)).status_code == 200, asset
        assert not EXTERNAL_LOAD.search(page.text)


@pytest.mark.parametrize("path", [p.relative_to(STATIC).as_posix() for p in OWN_FILES])
def test_our_pages_and_scripts_name_no_other_host(path: str) -> None:
    assert not EXTERNAL_URL.findall((STATIC / path).read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [p.relative_to(STATIC).as_posix() for p in WEB_FILES])
def test_no_shipped_file_loads_anything_from_another_host(path: str) -> None:
    # Vendored bundles mention URLs in messages and licences; none is loaded (fonts are data: URLs).
    text = (STATIC / path).read_text(encoding="utf-8")
    if path.endswith((".html", ".css")):
        assert not EXTERNAL_LOAD.search(text)
    else:
        assert not re.search(r"""\bimport\s*\(?\s*["'](?:https?:)?//""", text)


async def test_console_false_takes_the_console_away_and_keeps_graphiql(tmp_path: Path) -> None:
    async with client_for(app_settings(tmp_path, console=False)) as c:
        assert (await c.get("/")).status_code == 404
        assert (await c.get("/console/app.js")).status_code == 404
        assert (await c.get("/graphql", headers={"Accept": "text/html"})).status_code == 200
        assert (await c.get("/console/vendor/graphiql/graphiql.min.js")).status_code == 200
    async with client_for(app_settings(tmp_path, console=False, graphiql=False)) as c:
        assert (await c.get("/console/vendor/graphql-ws/graphql-ws.min.js")).status_code == 404


def test_vendored_graphiql_is_what_strawberrys_page_loads_from_its_cdn() -> None:
    template = (Path(strawberry.__file__).parent / "static" / "graphiql.html").read_text()
    wanted = set(re.findall(r'integrity="(sha384-[^"]+)"', template))
    manifest = json.loads((STATIC / "vendor" / "graphiql" / "VENDORED.json").read_text())["files"]
    ours = {}
    for name, entry in manifest.items():
        digest = hashlib.sha384((STATIC / "vendor" / "graphiql" / name).read_bytes()).digest()
        assert entry["integrity"] == f"sha384-{base64.b64encode(digest).decode()}", name
        ours[entry["integrity"]] = name
    # Every file of Strawberry's page but js-cookie (a Django CSRF helper this gateway has no use for).
    assert len(wanted - set(ours)) == 1, "Strawberry's GraphiQL page changed: vendor its new files"
    page = (STATIC / "graphiql.html").read_text()
    assert all(f'integrity="{integrity}"' in page for integrity in ours)


def test_vendored_graphql_ws_is_the_version_the_node_tests_pin() -> None:
    folder = STATIC / "vendor" / "graphql-ws"
    manifest = json.loads((folder / "VENDORED.json").read_text())
    bundle = (folder / "graphql-ws.min.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == manifest["sha256"]
    node = ROOT / "tests" / "e2e" / "node"
    pinned = json.loads((node / "package.json").read_text())["dependencies"]["graphql-ws"]
    assert manifest["version"] == pinned
    installed = node / "node_modules" / "graphql-ws"  # `make install` runs npm ci from the lock file
    assert json.loads((installed / "package.json").read_text())["version"] == pinned
    assert (installed / manifest["file"]).read_bytes() == bundle


def test_a_built_package_ships_every_console_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["kensa_gql"]
    package = ROOT / "kensa_gql"
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            # setuptools globs like glob(): '*' never crosses a '/'.
            assert any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), relative
