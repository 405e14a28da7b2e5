"""The /api/v1 endpoints: parse, call one service, render. Nothing else happens here."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from kensa_gql import logs
from kensa_gql.api import caller, render
from kensa_gql.api.payloads import JSONTooDeep, declared_too_large, loads
from kensa_gql.api.responses import FastJSONResponse
from kensa_gql.api.rest.openapi import OPENAPI_PATH, openapi_document
from kensa_gql.api.rest.waiting import applied, preferred_wait, unless_disconnected
from kensa_gql.domain.errors import BadUserInput, NotFound, PayloadTooLarge
from kensa_gql.domain.paging import Page, page_of
from kensa_gql.domain.videos import Video
from kensa_gql.services import accounts, following, videos
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps

MAX_BODY_BYTES = 64 * 1024
CLIENT_CLOSED = 499  # nginx's "client closed request": logged, never received by anyone


class VideoIdConvertor(Convertor[str]):
    """Any path segment except the fixed ones, so ``GET /video/generate`` is a 405, not a lookup."""

    regex = "(?!(?:generate|list|task)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("video_id", VideoIdConvertor())


def ok(data: Any) -> Response:
    return FastJSONResponse({"success": True, "data": data})


def ok_with(data: Any, headers: dict[str, str]) -> Response:
    return FastJSONResponse({"success": True, "data": data}, headers=headers)


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


async def _principal(request: Request) -> Principal:
    principal = await caller.authenticate(request.scope, request.app.state.authenticator)
    logs.note(user_id=principal.user_id)
    return principal


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw, 10)
    except ValueError:
        raise BadUserInput(f"{name}: must be an integer", field=name) from None


def _page(request: Request) -> Page:
    return page_of(_int_param(request, "page", 1), _int_param(request, "pageSize", 20))


async def _json_object(request: Request) -> dict[str, Any]:
    # Refused while it streams: a declared length before reading, a chunked body once past the limit.
    if declared_too_large(request.scope, MAX_BODY_BYTES):
        raise PayloadTooLarge(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            raise PayloadTooLarge(MAX_BODY_BYTES)
        chunks.append(chunk)
    try:
        data = loads(b"".join(chunks))
    except JSONTooDeep as exc:
        raise BadUserInput(f"request body: {exc}") from None
    except ValueError:  # UnicodeDecodeError included
        raise BadUserInput("request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise BadUserInput("request body must be a JSON object")
    return data


_CANCEL_AFTER = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,8})m)?(?:([0-9]{1,10})s)?")


def cancel_after(value: str | None) -> int | None:
    """The ``Cancel-After`` header in seconds (Replicate's form: ``30s``, ``5m``, ``1h30m``), or None."""
    if value is None:
        return None
    match = _CANCEL_AFTER.fullmatch(value)
    if match is None or not any(match.groups()):
        raise BadUserInput("Cancel-After: a duration such as 30s, 5m or 1h30m", field="Cancel-After")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return videos.check_deadline(hours * 3600 + minutes * 60 + seconds, "Cancel-After")


async def generate(request: Request) -> Response:
    principal = await _principal(request)
    wait = preferred_wait(request.headers)  # read first: a bad one is ignored, never a reason to refuse
    deadline = cancel_after(request.headers.get("cancel-after"))
    body = await _json_object(request)
    result = await videos.generate_video(body, principal, idempotency_key=request.headers.get("idempotency-key"),
                                         deadline_seconds=deadline, deps=_deps(request))
    if wait is None:
        return ok(render.video_created(result.video))
    # Created and charged whatever happens next: a video deleted while held answers as created.
    answered, video = await unless_disconnected(request.receive, _finished_or(
        result.video, principal, seconds=wait, deps=_deps(request)))
    if not answered or video is None:
        return Response(status_code=CLIENT_CLOSED)
    return ok_with(render.video_waited(video), applied(wait))


async def _finished_or(video: Video, principal: Principal, *, seconds: int, deps: Deps) -> Video:
    try:
        return await following.until_finished(video.uuid, principal, seconds=seconds, deps=deps)
    except NotFound:
        return video


async def list_videos(request: Request) -> Response:
    principal = await _principal(request)
    page = _page(request)
    items, total = await videos.list_videos(principal, page, deps=_deps(request))
    return ok({"videos": [render.video_summary(v) for v in items], "total": total, "page": page.page,
               "pageSize": page.page_size})


async def task_status(request: Request) -> Response:
    principal = await _principal(request)
    uuid = request.query_params.get("uuid")
    if not uuid:
        raise BadUserInput("uuid: is required", field="uuid")
    wait = preferred_wait(request.headers)
    if wait is None:
        return ok(render.video_task(await videos.get_video(uuid, principal, deps=_deps(request))))
    answered, video = await unless_disconnected(request.receive, following.until_finished(
        uuid, principal, seconds=wait, deps=_deps(request)))
    if not answered or video is None:
        return Response(status_code=CLIENT_CLOSED)
    return ok_with(render.video_task(video), applied(wait))


async def get_video(request: Request) -> Response:
    body = await video_body(request.scope, request.path_params["uuid"])
    return Response(body, media_type=FastJSONResponse.media_type)


async def video_body(scope: Scope, uuid: str) -> bytes:
    """``GET /video/{uuid}``'s answer, for the route above and the front door (``api/frontdoor.py``)."""
    state = scope["app"].state
    principal = await caller.authenticate(scope, state.authenticator)
    logs.note(user_id=principal.user_id)
    video = await videos.get_video(uuid, principal, deps=state.deps)
    return orjson.dumps({"success": True, "data": render.video_detail(video)})


async def delete_video(request: Request) -> Response:
    principal = await _principal(request)
    uuid = await videos.delete_video(request.path_params["uuid"], principal, deps=_deps(request))
    return ok({"uuid": uuid, "deleted": True})


async def cancel_video(request: Request) -> Response:
    principal = await _principal(request)
    result = await videos.cancel_video(request.path_params["uuid"], principal, deps=_deps(request))
    if result.video is None:
        raise NotFound()  # another user's, deleted or unknown: the 404 every endpoint answers
    return ok({"uuid": result.video.uuid, "outcome": result.outcome.value, "status": result.video.status.legacy})


async def list_models(request: Request) -> Response:
    return ok({"models": [render.model_entry(spec) for spec in _deps(request).catalog.models]})


async def credit_history(request: Request) -> Response:
    principal = await _principal(request)
    page = _page(request)
    entries, total = await accounts.credit_history(principal, page, db=_deps(request).db)
    return ok({"transactions": [render.credit_entry(e) for e in entries], "total": total, "page": page.page,
               "pageSize": page.page_size})


async def openapi(request: Request) -> Response:
    return FastJSONResponse(openapi_document(_deps(request).catalog))


def routes() -> list[BaseRoute]:
    # The hottest route first: Starlette tries routes in order (the convertor keeps the fixed
    # paths out of the uuid routes, so the order changes nothing else).
    return [
        Route("/video/{uuid:video_id}", get_video, methods=["GET"]),
        Route("/video/{uuid:video_id}", delete_video, methods=["DELETE"]),
        Route("/video/{uuid:video_id}/cancel", cancel_video, methods=["POST"]),
        Route("/video/generate", generate, methods=["POST"]),
        Route("/video/list", list_videos, methods=["GET"]),
        Route("/video/task", task_status, methods=["GET"]),
        Route("/config/models", list_models, methods=["GET"]),
        Route("/credit/history", credit_history, methods=["GET"]),
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
    ]
