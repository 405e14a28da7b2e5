"""The web console at ``/`` and the offline GraphiQL page: static files shipped with the package.

The console (static/app/) is plain HTML, CSS and ES modules that use only the public GraphQL API,
as any frontend would. Third-party browser code is vendored under static/vendor/ (each folder's
VENDORED.json names the npm package, version and checksum), so nothing is fetched from the internet.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
VENDOR_PREFIX = f"{PREFIX}/vendor"

# The pages change with the package, not per request; browsers revalidate them (ETag) every time.
_NO_STALE = {"Cache-Control": "no-cache"}


async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "app" / "index.html", headers=_NO_STALE)


@cache
def graphiql_html() -> str:
    """GraphiQL's page, referencing the vendored React and GraphiQL instead of a CDN."""
    return (STATIC / "graphiql.html").read_text(encoding="utf-8")


def graphiql_response() -> HTMLResponse:
    return HTMLResponse(graphiql_html(), headers=_NO_STALE)


def routes(*, console: bool, graphiql: bool) -> list[BaseRoute]:
    """``/`` and ``/console/...`` when the console is on; the vendored assets also for GraphiQL."""
    found: list[BaseRoute] = []
    if console or graphiql:
        found.append(Mount(VENDOR_PREFIX, app=StaticFiles(directory=STATIC / "vendor")))
    if console:
        found += [Route("/", index, methods=["GET", "HEAD"]),
                  Mount(PREFIX, app=StaticFiles(directory=STATIC / "app"))]
    return found
