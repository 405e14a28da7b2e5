"""DashScope's video-synthesis task API, from the Model Studio reference (shared/notes/providers.md §4).

``POST /api/v1/services/aigc/video-generation/video-synthesis`` (Bearer key, mandatory
``X-DashScope-Async: enable``) → ``{"output": {"task_status": "PENDING", "task_id"}, "request_id"}``;
``GET /api/v1/tasks/{id}`` → ``output.task_status`` PENDING | RUNNING | SUCCEEDED | FAILED |
CANCELED | UNKNOWN, ``output.video_url`` (a signed OSS URL) on success. Errors: ``{"code", "message",
"request_id"}``. No progress, no per-request callback.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.emulators.common import CANCELLED, NEVER, POLICY, RETRYABLE, EmTask, Emulator

T2V_SIZES = {"1280*720", "720*1280", "960*960", "1088*832", "832*1088",
             "1920*1080", "1080*1920", "1440*1440", "1632*1248", "1248*1632"}
_PARAMETERS = {"size", "resolution", "duration", "prompt_extend", "shot_type", "watermark", "seed", "audio"}
_INPUT = {"prompt", "negative_prompt", "audio_url", "img_url"}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "request_id": str(uuid.uuid4())},
                        status_code=status)


class DashScopeEmulator(Emulator):
    def routes(self) -> list[BaseRoute]:
        return [Route("/api/v1/services/aigc/video-generation/video-synthesis", self.create,
                      methods=["POST"]),
                Route("/api/v1/tasks/{task_id}", self.get_task, methods=["GET"]),
                Route("/api/v1/tasks/{task_id}/cancel", self.cancel, methods=["POST"]),
                Route("/oss/{name}", self.file, methods=["GET"])]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def create(self, request: Request) -> Response:
        seen = await self.record(request)
        if not self._authorized(request):
            return error(401, "InvalidApiKey", "Invalid API-key provided.")
        if request.headers.get("x-dashscope-async") != "enable":
            return error(403, "AccessDenied", "current user api does not support synchronous calls.")
        canned = self.canned(self.script.create_replies)
        if canned is not None:
            return canned
        problem = validate(seen.body)
        if problem is not None:
            return problem
        task = self.new_task(seen.body, prefix="", base=str(request.base_url))
        return JSONResponse({"output": {"task_status": "PENDING", "task_id": task.id},
                             "request_id": str(uuid.uuid4())})

    def new_task(self, request: Any, *, prefix: str, base: str, callback_url: str | None = None) -> EmTask:
        task = super().new_task(request, prefix=prefix, base=base, callback_url=callback_url)
        # DashScope task ids are UUIDs.
        self.tasks.pop(task.id)
        task.id = str(uuid.uuid4())
        self.tasks[task.id] = task
        return task

    async def cancel(self, request: Request) -> Response:
        """Model Studio's task cancel: only a PENDING task can be cancelled (the refusal's exact
        code was not captured in the notes; any 4xx is a refusal to the adapter)."""
        await self.record(request)
        if not self._authorized(request):
            return error(401, "InvalidApiKey", "Invalid API-key provided.")
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return error(404, "NotFound", "The task does not exist.")
        if task.outcome == CANCELLED or self.phase(task) != "queued":
            return error(400, "UnsupportedOperation",
                         "Failed to cancel the task, please confirm if the task is in PENDING status.")
        task.outcome = CANCELLED
        return JSONResponse({"request_id": str(uuid.uuid4())})

    async def get_task(self, request: Request) -> Response:
        await self.record(request)
        if not self._authorized(request):
            return error(401, "InvalidApiKey", "Invalid API-key provided.")
        canned = self.canned(self.script.poll_replies)
        if canned is not None:
            return canned
        request_id = str(uuid.uuid4())
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:  # ids are queryable for 24 hours; after that, or never issued: UNKNOWN
            return JSONResponse({"request_id": request_id,
                                 "output": {"task_id": request.path_params["task_id"],
                                                                      "task_status": "UNKNOWN"}})
        output: dict[str, Any] = {"task_id": task.id, "submit_time": "2026-11-28 14:18:52.331"}
        phase = self.phase(task)
        if phase == "queued":
            output["task_status"] = "PENDING"
        elif phase == "running" or task.outcome == NEVER:
            output["task_status"] = "RUNNING"
        elif task.outcome == CANCELLED:
            output["task_status"] = "CANCELED"
        elif task.outcome == POLICY:
            output.update(task_status="FAILED", code="DataInspectionFailed",
                          message="Output data may contain inappropriate content.")
        elif task.outcome == RETRYABLE:
            output.update(task_status="FAILED", code="InternalError.Algo", message="Algorithm process error.")
        else:
            output.update(task_status="SUCCEEDED", end_time="2026-11-28 14:23:39.407",
                          video_url=f"{task.base}/oss/{task.id}.mp4?Expires=1790000000&OSSAccessKeyId=x&Signature=y")
        body: dict[str, Any] = {"request_id": request_id, "output": output}
        if output["task_status"] == "SUCCEEDED":
            parameters = task.request["parameters"]
            body["usage"] = {"duration": parameters["duration"],
                             "output_video_duration": parameters["duration"],
                             "video_count": 1, "SR": 720}
        if output["task_status"] in ("SUCCEEDED", "FAILED"):
            task.done_reported.set()
        return JSONResponse(body)

    async def file(self, request: Request) -> Response:
        await self.record(request)

        def expired() -> Response:  # what OSS answers once the signature's Expires has passed
            return Response(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                            b"<Message>Request has expired.</Message></Error>", status_code=403,
                            media_type="application/xml")

        return self.file_response(expired=expired)

    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        raise NotImplementedError("callbacks are configured in the console, not per request")


def validate(body: Any) -> Response | None:
    def invalid(message: str) -> Response:
        return error(400, "InvalidParameter", message)

    if not isinstance(body, dict) or set(body) - {"model", "input", "parameters"}:
        return invalid("The request body is malformed.")
    model = body.get("model")
    task_input = body.get("input")
    parameters = body.get("parameters", {})
    if model not in ("wan2.6-t2v", "wan2.6-i2v", "wan2.6-i2v-flash"):
        return error(400, "InvalidParameter", "Model not exist.")
    if not isinstance(task_input, dict) or set(task_input) - _INPUT:
        return invalid("input is malformed")
    if not isinstance(parameters, dict) or set(parameters) - _PARAMETERS:
        return invalid(f"parameters has unknown fields: {sorted(set(parameters) - _PARAMETERS)}")
    prompt = task_input.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return invalid("input.prompt is required")
    duration = parameters.get("duration", 5)
    if type(duration) is not int:
        return invalid("parameters.duration must be an integer")
    if model == "wan2.6-t2v":
        if "img_url" in task_input:
            return invalid("wan2.6-t2v does not take input.img_url")
        if "resolution" in parameters:
            return invalid("wan2.6-t2v takes parameters.size, not resolution")
        if parameters.get("size", "1920*1080") not in T2V_SIZES:
            return invalid("parameters.size is not supported")
        if not 2 <= duration <= 15:
            return invalid("parameters.duration must be between 2 and 15")
        return None
    if not isinstance(task_input.get("img_url"), str):
        return invalid("input.img_url is required")
    if "size" in parameters:
        return invalid("image-to-video takes parameters.resolution, not size")
    if parameters.get("resolution", "1080P") not in ("720P", "1080P"):
        return invalid("parameters.resolution must be 720P or 1080P")
    allowed = range(2, 16) if model == "wan2.6-i2v-flash" else (5, 10, 15)
    if duration not in allowed:
        return invalid("parameters.duration is not supported")
    return None
