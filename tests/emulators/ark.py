"""BytePlus ModelArk / Volcengine Ark content generation tasks (shared/notes/providers.md §5).

``POST /api/v3/contents/generations/tasks`` (Bearer key) with a ``content`` list → ``{"id":
"cgt-..."}``; ``GET /api/v3/contents/generations/tasks/{id}`` → ``status`` queued | running |
succeeded | failed | expired | cancelled, ``content.video_url`` on success, ``error{code,message}``
on failure. HTTP errors: ``{"error": {"code", "message"}}``. With ``callback_url`` the task object
is posted when the status changes.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.emulators.common import CANCELLED, NEVER, POLICY, RETRYABLE, EmTask, Emulator

MODELS = ("seedance-1-5-pro-251215", "doubao-seedance-1-5-pro-251215")
_FIELDS = {"model", "content", "resolution", "ratio", "duration", "generate_audio", "camera_fixed",
           "watermark", "seed", "callback_url", "return_last_frame", "draft", "service_tier",
           "execution_expires_after"}
_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class ArkEmulator(Emulator):
    def routes(self) -> list[BaseRoute]:
        return [Route("/api/v3/contents/generations/tasks", self.create, methods=["POST"]),
                Route("/api/v3/contents/generations/tasks/{task_id}", self.get_task, methods=["GET"]),
                Route("/api/v3/contents/generations/tasks/{task_id}", self.cancel, methods=["DELETE"]),
                Route("/tos/{name}", self.file, methods=["GET"])]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def create(self, request: Request) -> Response:
        seen = await self.record(request)
        if not self._authorized(request):
            return error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
        canned = self.canned(self.script.create_replies)
        if canned is not None:
            return canned
        problem = validate(seen.body)
        if problem is not None:
            return problem
        task = self.new_task(seen.body, prefix=f"cgt-{time.strftime('%Y%m%d%H%M%S')}-",
                             base=str(request.base_url),
                             callback_url=seen.body.get("callback_url"))
        return JSONResponse({"id": task.id})

    async def cancel(self, request: Request) -> Response:
        """``DELETE`` cancels a queued task (a finished one's record is deleted); a running task is
        refused (its exact code was not captured in the notes; any 4xx is a refusal to the adapter)."""
        await self.record(request)
        if not self._authorized(request):
            return error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return error(404, "ResourceNotFound", "The specified task is not found.")
        phase = self.phase(task)
        if phase == "running" or (phase == "queued" and task.outcome == NEVER and
                                  time.monotonic() - task.created >= self.script.generation_seconds * 0.2):
            return error(409, "InvalidAction", "A running task cannot be cancelled.")
        if phase == "done" and task.outcome != CANCELLED:
            del self.tasks[task.id]
        else:
            task.outcome = CANCELLED
        return JSONResponse({})

    async def get_task(self, request: Request) -> Response:
        await self.record(request)
        if not self._authorized(request):
            return error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
        canned = self.canned(self.script.poll_replies)
        if canned is not None:
            return canned
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return error(404, "ResourceNotFound", "The specified task is not found.")
        body = self.task_json(task)
        if body["status"] in ("succeeded", "failed"):
            task.done_reported.set()
        return JSONResponse(body)

    def task_json(self, task: EmTask, *, final: bool = True) -> dict[str, Any]:
        request = task.request
        body: dict[str, Any] = {"id": task.id, "model": request["model"], "created_at": int(time.time()),
                                "updated_at": int(time.time()),
                                "resolution": request.get("resolution", "720p"),
                                "ratio": request.get("ratio", "adaptive"),
                                "duration": request.get("duration", 5), "framespersecond": 24,
                                "service_tier": "default", "execution_expires_after": 172800}
        phase = self.phase(task) if final else "running"
        if task.outcome == CANCELLED:
            return {**body, "status": "cancelled"}
        if phase == "queued":
            return {**body, "status": "queued"}
        if phase == "running" or task.outcome == NEVER:
            return {**body, "status": "running"}
        if task.outcome == POLICY:
            return {**body, "status": "failed", "error": {
                "code": "OutputVideoSensitiveContentDetected",
                "message": "The request failed because the output video may contain sensitive information."}}
        if task.outcome == RETRYABLE:
            return {**body, "status": "failed", "error": {
                "code": "ServerOverloaded", "message": "The service is overloaded, please try again later."}}
        return {**body, "status": "succeeded", "content": {"video_url": f"{task.base}/tos/{task.id}.mp4"},
                "usage": {"completion_tokens": 19845, "total_tokens": 19845}}

    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        return self.task_json(task, final=final)

    async def file(self, request: Request) -> Response:
        await self.record(request)
        return self.file_response()


def validate(body: Any) -> Response | None:
    def invalid(message: str) -> Response:
        return error(400, "InvalidParameter", message)

    if not isinstance(body, dict):
        return invalid("The request body is malformed.")
    if set(body) - _FIELDS:
        return invalid(f"unknown parameter(s): {sorted(set(body) - _FIELDS)}")
    if body.get("model") not in MODELS:
        return error(404, "InvalidEndpointOrModel.NotFound", "The model or endpoint does not exist.")
    content = body.get("content")
    if not isinstance(content, list) or not all(isinstance(item, dict) for item in content):
        return invalid("content must be a list")
    texts = [item for item in content if item.get("type") == "text"]
    images = [item for item in content if item.get("type") == "image_url"]
    if len(texts) != 1 or not isinstance(texts[0].get("text"), str) or not texts[0]["text"].strip():
        return invalid("content must hold exactly one text item")
    if len(texts) + len(images) != len(content) or len(images) > 2:
        return invalid("content holds unsupported items (1.5 Pro takes at most two frames)")
    for image in images:
        url = image.get("image_url", {}).get("url") if isinstance(image.get("image_url"), dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
            return invalid("image_url.url must be a URL or a data URL")
        if image.get("role", "first_frame") not in ("first_frame", "last_frame"):
            return invalid("role must be first_frame or last_frame")
    if len(images) == 2 and {i.get("role") for i in images} != {"first_frame", "last_frame"}:
        return invalid("two images need the roles first_frame and last_frame")
    if body.get("resolution", "720p") not in ("480p", "720p", "1080p"):
        return invalid("resolution must be 480p, 720p or 1080p")
    if body.get("ratio", "adaptive") not in _RATIOS:
        return invalid("ratio is not supported")
    duration = body.get("duration", 5)
    if type(duration) is not int or not 4 <= duration <= 12:
        return invalid("duration must be an integer from 4 to 12")
    for flag in ("generate_audio", "camera_fixed", "watermark", "return_last_frame", "draft"):
        if flag in body and type(body[flag]) is not bool:
            return invalid(f"{flag} must be a boolean")
    if "callback_url" in body and not isinstance(body["callback_url"], str):
        return invalid("callback_url must be a string")
    return None
