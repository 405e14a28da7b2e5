"""OpenAI's Videos API, from openai-python's generated resources (shared/notes/providers.md §2).

``POST /v1/videos`` (Bearer key; JSON, or multipart when ``input_reference`` is a file) → a Video
object; ``GET /v1/videos/{id}`` → ``status`` queued | in_progress | completed | failed with
``progress``; ``GET /v1/videos/{id}/content`` (the key again) → the MP4. ``seconds`` is a string;
an uploaded reference image must be exactly ``size``. Errors: ``{"error": {"message", "type",
"param", "code"}}``.
"""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.emulators.common import NEVER, POLICY, RETRYABLE, EmTask, Emulator

SIZES = {"sora-2": ("720x1280", "1280x720"), "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024")}
_FIELDS = {"prompt", "model", "seconds", "size", "input_reference", "character_ids"}


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


class OpenAIEmulator(Emulator):
    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/videos", self.create, methods=["POST"]),
                Route("/v1/videos/{video_id}", self.retrieve, methods=["GET"]),
                Route("/v1/videos/{video_id}/content", self.content, methods=["GET"])]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    def _unauthorized(self) -> Response:
        return error(401, "Incorrect API key provided.", code="invalid_api_key")

    async def create(self, request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            fields: dict[str, Any] = {}
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    fields[name] = {"filename": value.filename, "content_type": value.content_type,
                                    "bytes": await value.read()}
                else:
                    fields[name] = value
            seen = await self.record(request, body=fields)
        else:
            seen = await self.record(request)
        if not self._authorized(request):
            return self._unauthorized()
        canned = self.canned(self.script.create_replies)
        if canned is not None:
            return canned
        body = seen.body
        problem = validate(body, multipart=kind.startswith("multipart/form-data"))
        if problem is not None:
            return problem
        task = self.new_task(body, prefix="video_", base=str(request.base_url))
        task.extra["created_at"] = int(time.time())
        return JSONResponse(self.video_json(task))

    def video_json(self, task: EmTask) -> dict[str, Any]:
        body = task.request
        video: dict[str, Any] = {
            "id": task.id, "object": "video", "model": body.get("model", "sora-2"), "created_at":
            task.extra.get("created_at"), "completed_at": None, "expires_at": None, "prompt": body["prompt"],
            "size": body.get("size", "720x1280"), "seconds": body.get("seconds", "4"),
            "remixed_from_video_id": None, "error": None}
        phase = self.phase(task)
        if phase == "queued":
            return {**video, "status": "queued", "progress": 0}
        if phase == "running" or task.outcome == NEVER:
            return {**video, "status": "in_progress", "progress": self.progress(task)}
        if task.outcome == POLICY:
            return {**video, "status": "failed", "progress": 0, "error": {
                "code": "moderation_blocked",
                "message": "Your request was blocked by our moderation system."}}
        if task.outcome == RETRYABLE:
            return {**video, "status": "failed", "progress": 0,
                    "error": {"code": "server_error",
                              "message": "The server had an error processing the video."}}
        now = int(time.time())
        return {**video, "status": "completed", "progress": 100, "completed_at": now,
                "expires_at": now + 3600}

    async def retrieve(self, request: Request) -> Response:
        await self.record(request)
        if not self._authorized(request):
            return self._unauthorized()
        canned = self.canned(self.script.poll_replies)
        if canned is not None:
            return canned
        task = self.tasks.get(request.path_params["video_id"])
        if task is None:
            return error(404, f"Video with id '{request.path_params['video_id']}' not found.",
                         param="video_id")
        video = self.video_json(task)
        if video["status"] in ("completed", "failed"):
            task.done_reported.set()
        return JSONResponse(video)

    async def content(self, request: Request) -> Response:
        await self.record(request)
        if not self._authorized(request):
            return self._unauthorized()
        task = self.tasks.get(request.path_params["video_id"])
        if task is None or self.video_json(task)["status"] != "completed":
            return error(404, "Video content is not available.", param="video_id")
        if request.query_params.get("variant", "video") != "video":
            return error(400, "Only the video variant is emulated.", param="variant")
        if self.script.download_status is not None:
            return error(self.script.download_status, "Downloads expire after 1 hours.")
        return self.file_response()

    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        raise NotImplementedError("OpenAI webhooks are configured in the dashboard, not per request")


def validate(body: Any, *, multipart: bool) -> Response | None:
    if not isinstance(body, dict):
        return error(400, "We could not parse the JSON body of your request.")
    if set(body) - _FIELDS:
        unknown = sorted(set(body) - _FIELDS)[0]
        return error(400, f"Unknown parameter: '{unknown}'.", param=unknown, code="unknown_parameter")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return error(400, "Missing required parameter: 'prompt'.", param="prompt",
                     code="missing_required_parameter")
    model = body.get("model", "sora-2")
    if model not in SIZES:
        return error(400, f"Invalid value for 'model': '{model}'.", param="model")
    seconds = body.get("seconds", "4")
    if not isinstance(seconds, str) or seconds not in ("4", "8", "12"):
        return error(400, "Invalid value for 'seconds': expected one of '4', '8', '12'.", param="seconds")
    size = body.get("size", "720x1280")
    if size not in SIZES[model]:
        return error(400, f"Invalid value for 'size': '{size}' is not supported by {model}.", param="size")
    reference = body.get("input_reference")
    if reference is None:
        return None
    if not multipart or not isinstance(reference, dict) or "bytes" not in reference:
        return error(400, "Invalid input_reference: expected a file.", param="input_reference")
    try:
        with Image.open(io.BytesIO(reference["bytes"])) as image:
            dimensions = f"{image.width}x{image.height}"
    except OSError:
        return error(400, "Invalid input_reference: not an image.", param="input_reference")
    if dimensions != size:
        return error(400, "Inpaint image must match the requested width and height", param="input_reference")
    return None
