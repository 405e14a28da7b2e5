"""Request ids, one access-log line per request, and the last line of defence against 500s."""

from __future__ import annotations

import json
import logging
import random
import re
import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kensa_gql import logs, metrics, tracing
from kensa_gql.api.metrics import HttpInstruments
from kensa_gql.api.ratelimits import admit

log = logging.getLogger("kensa_gql.access")
errors = logging.getLogger("kensa_gql.errors")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_INTERNAL = json.dumps({"success": False, "error": {"code": "INTERNAL_SERVER_ERROR",
                                                    "message": "internal server error"}}).encode()


class RequestContext:
    """Pure ASGI (no BaseHTTPMiddleware): it must not buffer bodies or break WebSockets.

    The outermost middleware (inside tracing's span): it sees every response, its own 500s
    included, so it also feeds the HTTP metrics when they are on (``instruments``), timed by the
    clock it already reads for the access log. One layer and one send wrapper for all of it.
    """

    def __init__(self, app: ASGIApp, *, instruments: HttpInstruments | None = None, gate: bool = False) -> None:
        self.app = app
        self.instruments = instruments
        # gate: answer CORS preflights (is_preflight) and count rate limits (ratelimits.admit) here
        # too, rather than in layers of their own; only without CORS, whose middleware must sit
        # between this one and the rate limits.
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and self.instruments is not None:
            metrics.WEBSOCKETS_OPEN.inc()
            try:
                await self._call(scope, receive, send)
            finally:
                metrics.WEBSOCKETS_OPEN.dec()
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        await self._call(scope, receive, send)

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":  # the first one
                incoming = value.decode("latin-1")
                break
        # Unique, not secret: 64 random bits from the fast generator (no system call per request).
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else f"{random.getrandbits(64):016x}"
        scope.setdefault("state", {})["request_id"] = request_id
        fields = logs.begin_request(request_id)
        if tracing.enabled:
            tracing.note_request(request_id)
        started = time.perf_counter()
        status = 0
        header = (b"x-request-id", request_id.encode())
        added = [header]

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        try:
            if scope["type"] != "http":
                # A WebSocket sends no http.response.start: no wrapper to keep alive for its lifetime.
                await self.app(scope, receive, send)
                return
            if self.gate:
                if is_preflight(scope):
                    await answer_preflight(send_with_id)
                    return
                limited = await admit(scope, send_with_id)
                if limited is None:
                    return  # refused: the 429 went out
                added = [*limited, header]
            await self.app(scope, receive, send_with_id)
        except Exception:
            errors.exception("unexpected error", extra={"request_id": request_id, "path": scope.get("path")})
            if scope["type"] == "http" and status == 0:
                status = 500
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(_INTERNAL)).encode()),
                    header]})
                await send({"type": "http.response.body", "body": _INTERNAL})
        finally:
            elapsed = time.perf_counter() - started
            if self.instruments is not None and scope["type"] == "http":
                self.instruments.observe(scope, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                duration = elapsed * 1000
                method = scope.get("method", "WS")
                logs.info(log, "%s %s %s %.1fms", method, scope.get("path"), status, duration,
                         extra={**fields, "method": method, "path": scope.get("path"),
                                "route": route_template(scope), "status": status,
                                "duration_ms": round(duration, 1)})


_VIDEO_PATH = re.compile(r"/api/v1/video/[0-9A-Za-z-]+")


def route_template(scope: Scope) -> str:
    """The route a request matched, as a template (``/api/v1/video/{video_id}``): never a raw path,
    so the value set stays bounded; ``unmatched`` for a path no route took."""
    route = scope.get("route")
    if route is not None:
        template = str(getattr(route, "path", ""))
        root = scope.get("root_path", "") or ""
        # (inside a Mount, root_path has grown by the mount's own path)
        return f"{root}/{{path}}" if isinstance(route, Mount) else f"{root}{template}"
    path = str(scope.get("path", ""))
    if path == "/graphql":
        return path
    if scope.get("method") == "GET" and _VIDEO_PATH.fullmatch(path):  # answered by the front door
        return "/api/v1/video/{video_id}"
    return "unmatched"


def is_preflight(scope: Scope) -> bool:
    """A CORS preflight outside the legacy mount, with no KENSA_CORS_ORIGINS.

    No origin is allowed then, and a preflight hears so as CORS expects (``answer_preflight``):
    204 without ``Access-Control-Allow-Origin`` (the browser then refuses the request itself),
    never a 405 from whichever view the path belongs to. The legacy ``/api/v1`` mount keeps
    answering exactly as it always has.
    """
    return scope["method"] == "OPTIONS" and not scope["path"].startswith("/api/v1") and any(
        name == b"access-control-request-method" for name, _ in scope["headers"])


async def answer_preflight(send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"allow", b"GET, POST, DELETE, OPTIONS"), (b"vary", b"Origin")]})
    await send({"type": "http.response.body", "body": b""})
