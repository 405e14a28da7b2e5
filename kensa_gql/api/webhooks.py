"""``POST /webhooks/{provider}/{video_uuid}/{token}``: vendors' task callbacks (EvoLink, Ark)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kensa_gql.api.payloads import declared_too_large
from kensa_gql.api.rest.routes import MAX_BODY_BYTES
from kensa_gql.domain.errors import PayloadTooLarge
from kensa_gql.services.callbacks import receive_callback
from kensa_gql.services.deps import Deps


def _nudge(request: Request) -> Callable[[int], None]:
    runner = request.app.state.runner
    # A process without a runner (serve --no-worker) leaves the task to its worker's polling.
    return runner.nudge if runner is not None else (lambda _video_id: None)


async def callback(request: Request) -> Response:
    deps: Deps = request.app.state.deps
    # The body is deliberately not read: it is unsigned, so the runner asks the vendor instead.
    # One declared too large is still refused, as every endpoint with a body refuses it.
    if declared_too_large(request.scope, MAX_BODY_BYTES):
        raise PayloadTooLarge(MAX_BODY_BYTES)
    params = request.path_params
    acted = await receive_callback(params["provider"], params["video_uuid"], params["token"], deps=deps,
                                   verifier=request.app.state.callbacks, nudge=_nudge(request))
    return JSONResponse({"received": True, "acted": acted})


def routes() -> list[BaseRoute]:
    return [Route("/{provider}/{video_uuid}/{token}", callback, methods=["POST"])]
