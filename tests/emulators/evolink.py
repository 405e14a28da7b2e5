"""EvoLink's unified task API, from docs.evolink.ai (shared/notes/providers.md §1).

``POST /v1/videos/generations`` (Bearer key) → ``{"id", "object": "video.generation.task",
"status": "pending", ...}``; ``GET /v1/tasks/{id}`` → ``status`` pending | processing | completed |
failed, ``progress``, ``results[]``; errors ``{"error": {"code", "message", "type"}}``. Callbacks:
HTTPS only, the task JSON posted when it finishes.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.emulators.common import NEVER, POLICY, RETRYABLE, EmTask, Emulator

_COMMON = {"model", "prompt", "image_urls", "callback_url"}
# model -> (allowed extra fields, durations, aspect ratios, qualities, max images, min images)
MODELS: dict[str, dict[str, Any]] = {
    "sora-2-preview": {"fields": {"aspect_ratio", "duration"}, "durations": {4, 8, 12},
                       "aspects": {"1280x720", "720x1280", "16:9", "9:16"}, "qualities": None, "images": (0,
                                                                                                          1)},
    "sora-2": {"fields": {"aspect_ratio", "duration", "remove_watermark"}, "durations": {10, 15},
               "aspects": {"16:9", "9:16"}, "qualities": None, "images": (0, 1)},
    "veo-3.1-generate-preview": {
        "fields": {"generation_type", "aspect_ratio", "duration", "quality", "n", "generate_audio", "seed",
                   "negative_prompt", "person_generation", "resize_mode"},
        "durations": {4, 6, 8}, "aspects": {"16:9", "9:16"}, "qualities": {"720p", "1080p"}, "images": (0,
                                                                                                        3)},
    "wan2.6-text-to-video": {
        "fields": {"aspect_ratio", "quality", "duration", "prompt_extend", "model_params", "audio_url"},
        "durations": {5, 10, 15}, "aspects": {"16:9", "9:16", "1:1", "4:3", "3:4"},
        "qualities": {"720p", "1080p"}, "images": (0, 0)},
    "wan2.6-image-to-video": {
        "fields": {"quality", "duration", "prompt_extend", "model_params", "audio_url"},
        "durations": {5, 10, 15}, "aspects": None, "qualities": {"720p", "1080p"}, "images": (1, 1)},
    "seedance-1.5-pro": {
        "fields": {"duration", "quality", "aspect_ratio", "generate_audio"}, "durations": set(range(4, 13)),
        "aspects": {"16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"},
        "qualities": {"480p", "720p", "1080p"}, "images": (0, 2)},
}
_PROMPT_LIMITS = {"sora-2-preview": 5000, "wan2.6-text-to-video": 1500, "wan2.6-image-to-video": 1500,
                  "seedance-1.5-pro": 2000}


def error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message, "type": kind}
    if param:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status)


def invalid(message: str, param: str) -> JSONResponse:
    return error(400, message, "invalid_request_error", param)


class EvolinkEmulator(Emulator):
    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/videos/generations", self.create, methods=["POST"]),
                Route("/v1/tasks/{task_id}", self.get_task, methods=["GET"]),
                Route("/files/{name}", self.file, methods=["GET"])]

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def create(self, request: Request) -> Response:
        seen = await self.record(request)
        if not self._authorized(request):
            return error(401, "Invalid API key", "authentication_error")
        canned = self.canned(self.script.create_replies)
        if canned is not None:
            return canned
        body = seen.body
        if not isinstance(body, dict):
            return invalid("request body must be JSON", "body")
        problem = validate(body)
        if problem is not None:
            return problem
        task = self.new_task(body, prefix=f"task-unified-{int(time.time())}-", base=str(request.base_url),
                             callback_url=body.get("callback_url"))
        return JSONResponse({"id": task.id, "object": "video.generation.task", "created": int(time.time()),
                             "model": body["model"], "type": "video", "status": "pending", "progress": 0,
                             "task_info": {"can_cancel": True, "estimated_time": 165,
                                           "video_duration": body.get("duration")},
                             "usage": {"billing_rule": "per_call", "credits_reserved": 8,
                                       "user_group": "default"}})

    async def get_task(self, request: Request) -> Response:
        await self.record(request)
        if not self._authorized(request):
            return error(401, "Invalid API key", "authentication_error")
        canned = self.canned(self.script.poll_replies)
        if canned is not None:
            return canned
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return error(404, "Task not found or expired", "not_found_error")
        body = self.task_json(task)
        if body["status"] in ("completed", "failed"):
            task.done_reported.set()
        return JSONResponse(body)

    def task_json(self, task: EmTask, *, final: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"id": task.id, "object": "video.generation.task",
                                "model": task.request["model"],
                                "type": "video", "task_info": {"can_cancel": False}}
        phase = self.phase(task) if final else "running"
        if phase == "queued":
            return {**body, "status": "pending", "progress": 0}
        if phase == "running" or task.outcome == NEVER:
            return {**body, "status": "processing", "progress": self.progress(task)}
        if task.outcome == POLICY:
            return {**body, "status": "failed", "progress": 100, "error": {
                "code": "content_policy_violation", "type": "content_policy_error",
                "message": "Your request was rejected by the safety system: content policy violation"}}
        if task.outcome == RETRYABLE:
            return {**body, "status": "failed", "progress": 100,
                    "error": {"code": "service_unavailable", "message": "Upstream service busy",
                              "type": "upstream_error"}}
        return {**body, "status": "completed", "progress": 100,
                "results": [f"{task.base}/files/{task.id}.mp4"]}

    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        return self.task_json(task, final=final)

    async def file(self, request: Request) -> Response:
        await self.record(request)
        return self.file_response()


def validate(body: dict[str, Any]) -> Response | None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return invalid("model is required", "model")
    spec = MODELS.get(model)
    if spec is None:
        return error(404, f"Model {model} not found", "not_found_error")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return invalid("prompt is required", "prompt")
    if len(prompt) > _PROMPT_LIMITS.get(model, 5000):
        return invalid("prompt is too long", "prompt")
    unknown = set(body) - _COMMON - spec["fields"]
    if unknown:
        return invalid(f"unsupported parameter(s) for {model}: {sorted(unknown)}", sorted(unknown)[0])
    duration = body.get("duration")
    if duration is not None and (type(duration) is not int or duration not in spec["durations"]):
        return invalid(f"duration must be one of {sorted(spec['durations'])}", "duration")
    if "aspect_ratio" in body and body["aspect_ratio"] not in (spec["aspects"] or ()):
        return invalid("aspect_ratio is not supported", "aspect_ratio")
    if "quality" in body and body["quality"] not in (spec["qualities"] or ()):
        return invalid("quality is not supported", "quality")
    images = body.get("image_urls", [])
    low, high = spec["images"]
    if not isinstance(images, list) or not low <= len(images) <= high or \
            not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in images):
        return invalid(f"image_urls must hold {low} to {high} URLs", "image_urls")
    kind = body.get("generation_type")
    if model.startswith("veo"):
        if kind not in ("TEXT", "FIRST&LAST", "REFERENCE"):
            return invalid("generation_type must be TEXT, FIRST&LAST or REFERENCE", "generation_type")
        if (kind == "TEXT") != (not images):
            return invalid("generation_type does not match image_urls", "generation_type")
    if "generate_audio" in body and type(body["generate_audio"]) is not bool:
        return invalid("generate_audio must be a boolean", "generate_audio")
    callback = body.get("callback_url")
    if callback is not None and (not isinstance(callback, str) or not callback.startswith("https://")
                                 or len(callback) > 2048):
        return invalid("callback_url must be an HTTPS URL of at most 2048 characters", "callback_url")
    return None
