"""The front door: the two busiest exact routes, straight to their handlers.

On ``GET /api/v1/video/{uuid}`` Starlette's exception middleware, router, the ``/api/v1`` mount,
route matching with the uuid convertor and the request and response objects cost about as much
as authenticating, reading and rendering the video (docs/performance.md). The front door sits
innermost among the middleware, inside RequestContext and CORS, so request ids, the access log,
the 500 fallback and CORS headers remain the same code for every request. It answers two shapes
and hands everything else to Starlette untouched:

* ``GET /api/v1/video/<segment>``, the segment letters, digits and hyphens (every uuid spelling
  the service accepts) and not one of the fixed names: the route's own ``video_body``, sent as
  the two messages Starlette's Response would send;
* ``POST /graphql``, when the GraphQL fast path is on: the GraphQL route, with the scope keys
  Starlette's router would add.

Errors Starlette would give to an exception handler (KensaError, HTTPException) are rendered by
the same function those handlers call (api/rest/errors.py ``rendered``); anything else
propagates to RequestContext as it did. A root path, HEAD, other
methods, trailing slashes and any other character in the segment take Starlette's way.
"""

from __future__ import annotations

import re

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kensa_gql.api.rest.errors import rendered
from kensa_gql.api.rest.routes import video_body

# What the /api/v1 mount and the video_id convertor route to get_video, narrowed to plain
# segments: anything else (an encoded slash, a newline, a dot) is left to Starlette's regexes.
_VIDEO = re.compile(r"/api/v1/video/([0-9A-Za-z-]+)")
_FIXED = frozenset({"generate", "list", "task"})  # their own routes: a GET there is a 405
_JSON = (b"content-type", b"application/json")

class FrontDoor:
    """Pure ASGI; ``graphql`` is the /graphql route to enter directly, or None (the fast path is off)."""

    def __init__(self, app: ASGIApp, *, graphql: Route | None) -> None:
        self.app = app
        self._graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method = scope["method"]
            if method == "GET":
                match = _VIDEO.fullmatch(scope["path"])
                if match is not None and match[1] not in _FIXED:
                    await self._video(match[1], scope, receive, send)
                    return
            elif method == "POST" and scope["path"] == "/graphql" and self._graphql is not None:
                await self._graphql_post(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _video(self, uuid: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await video_body(scope, uuid)
        except Exception as exc:
            await self._handle(exc, scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), _JSON]})
        await send({"type": "http.response.body", "body": body})

    async def _graphql_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._graphql
        assert route is not None
        scope.setdefault("router", scope["app"].router)
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await route.handle(scope, receive, sender)
        except Exception as exc:
            if started and rendered(exc) is not None:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            await self._handle(exc, scope, receive, sender)

    async def _handle(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        response = rendered(exc)
        if response is None:
            raise exc
        await response(scope, receive, send)
