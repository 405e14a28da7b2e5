"""``/metrics`` for Prometheus, and the HTTP instruments: requests by route template, latency.

Routes are labelled by template (``/api/v1/video/{uuid}``), never by raw path; anything unrouted
is ``other``.
"""

from __future__ import annotations

import hmac
import os
import re

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from kensa_gql import metrics
from kensa_gql.api.rest import routes as rest
from kensa_gql.services.accounts import bearer_token, frozen_credits
from kensa_gql.services.deps import Deps

_METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
_FIXED = ("/graphql", "/healthz", "/readyz", "/metrics", "/", "/api/v1/docs")


def _templates() -> tuple[dict[str, str], list[tuple[re.Pattern[str], str]]]:
    exact = {path: path for path in _FIXED}
    patterns = []
    for route in rest.routes():
        path = "/api/v1" + re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)  # type: ignore[attr-defined]
        if "{" in path:
            patterns.append((re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))), path))
        else:
            exact[path] = path
    return exact, patterns


class HttpInstruments:
    """Each HTTP response counted and timed by route template (kensa_gql/metrics.py ``http_request``).
    ``RequestContext`` (api/middleware.py), the outermost middleware, calls it for every response,
    its own 500s included."""

    def __init__(self) -> None:
        self._exact, self._patterns = _templates()

    def route(self, path: str) -> str:
        template = self._exact.get(path)
        if template is not None:
            return template
        for pattern, name in self._patterns:
            if pattern.fullmatch(path):
                return name
        if path.startswith("/api/v1/docs/"):
            return "/api/v1/docs/{file}"
        if path.startswith("/media/"):
            return "/media/{folder}/{file}"
        if path.startswith("/webhooks/"):
            return "/webhooks/{vendor}"
        return "other"

    def observe(self, scope: Scope, status: int, elapsed: float) -> None:
        """One HTTP response (``status`` 0: none was sent, counted as the 500 it amounts to)."""
        method = scope["method"] if scope["method"] in _METHODS else "other"
        metrics.http_request(self.route(scope["path"]), method, status or 500, elapsed)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes on the host: each writes its values to files there; merged per scrape.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


async def metrics_endpoint(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None:
        presented = bearer_token(request.headers.get("authorization")) or ""
        if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            return Response("unauthorized\n", status_code=401, media_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    deps: Deps = request.app.state.deps
    try:
        metrics.CREDITS_FROZEN.set(await frozen_credits(db=deps.db))
    except Exception:  # the other figures are worth serving while the database is away
        metrics.CREDITS_FROZEN.set(float("nan"))
    metrics.SUBSCRIPTIONS_ACTIVE.set(sum(len(group) for group in deps.watchers.values()))
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
