"""The interactive page for the /api/v1 document: Swagger UI at ``/api/v1/docs``, shipped in the package.

Its files (docs/, vendored from swagger-ui-dist) are served from ``/api/v1/docs/<file>``; the page
loads them and ``openapi.json`` by relative URLs, so it works under any path prefix, offline, and
with no CDN. Outside the /api/v1 mount on purpose: a page for people, not part of the API.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "docs"
PATH = "/api/v1/docs"

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Kensa video generation API (/api/v1)</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/kensa-docs.js"></script>
</body>
</html>
"""


async def docs_page(_request: Request) -> Response:
    return HTMLResponse(PAGE)


def routes() -> list[BaseRoute]:
    """The page and its files; list them before the /api/v1 mount, which would take the paths first."""
    return [Route(PATH, docs_page, methods=["GET"]), Mount(PATH, app=StaticFiles(directory=ASSETS))]
