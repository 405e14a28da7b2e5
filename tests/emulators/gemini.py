"""The Gemini API's Veo endpoints, from ai.google.dev and python-genai (shared/notes/providers.md §3.1).

``POST /v1beta/models/{model}:predictLongRunning`` (``x-goog-api-key``) → ``{"name":
"models/{model}/operations/{id}"}``; ``GET /v1beta/{name}`` → ``done`` and, when done,
``response.generateVideoResponse.generatedSamples[].video.uri`` (a file URI that needs the key
and redirects to a signed download), or ``error``, or RAI-filtered counts. Errors use Google's
``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tests.emulators.common import CANCELLED, NEVER, POLICY, RETRYABLE, EmTask, Emulator

MODELS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-preview")
_PARAMETERS = {"aspectRatio", "resolution", "durationSeconds", "negativePrompt", "personGeneration",
               "sampleCount", "seed", "enhancePrompt"}
_INSTANCE = {"prompt", "image", "lastFrame", "referenceImages", "video"}


def error(status: int, message: str, code_name: str, reason: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message, "status": code_name}
    if reason:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                            "domain": "googleapis.com"}]
    return JSONResponse({"error": body}, status_code=status)


def invalid(message: str) -> JSONResponse:
    return error(400, message, "INVALID_ARGUMENT")


class GeminiEmulator(Emulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signed_downloads: list[dict[str, str]] = []  # headers the signed URL received

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1beta/models/{spec}", self.start, methods=["POST"]),
                Route("/v1beta/models/{model}/operations/{op}", self.operation, methods=["GET"]),
                Route("/v1beta/models/{model}/operations/{op}", self.cancel, methods=["POST"]),
                Route("/v1beta/files/{spec}", self.download, methods=["GET"]),
                Route("/signed/{name}", self.signed, methods=["GET"])]

    def _authorized(self, request: Request) -> Response | None:
        if "key" in request.query_params:
            # Accepted by Google, but it would put the key into every logged URL: the test fails loudly.
            return invalid("test emulator: the key must travel in x-goog-api-key, not ?key=")
        if request.headers.get("x-goog-api-key") != self.key:
            return error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT",
                         reason="API_KEY_INVALID")
        return None

    async def start(self, request: Request) -> Response:
        seen = await self.record(request)
        model, _, method = request.path_params["spec"].partition(":")
        if method != "predictLongRunning":
            return error(404, "Method not found.", "NOT_FOUND")
        refused = self._authorized(request)
        if refused is not None:
            return refused
        canned = self.canned(self.script.create_replies)
        if canned is not None:
            return canned
        if model not in MODELS:
            return error(404, f"models/{model} is not found for API version v1beta", "NOT_FOUND")
        problem = validate(seen.body)
        if problem is not None:
            return problem
        task = self.new_task(seen.body, prefix="op", base=str(request.base_url))
        task.extra["model"] = model
        return JSONResponse({"name": f"models/{model}/operations/{task.id}"})

    async def operation(self, request: Request) -> Response:
        await self.record(request)
        refused = self._authorized(request)
        if refused is not None:
            return refused
        canned = self.canned(self.script.poll_replies)
        if canned is not None:
            return canned
        task = self.tasks.get(request.path_params["op"])
        if task is None or task.extra["model"] != request.path_params["model"]:
            return error(404, "Operation not found.", "NOT_FOUND")
        name = f"models/{task.extra['model']}/operations/{task.id}"
        if self.phase(task) != "done" or task.outcome == NEVER:
            return JSONResponse({"name": name})
        task.done_reported.set()
        if task.outcome == CANCELLED:  # google.longrunning: a cancelled operation ends with Code.CANCELLED
            return JSONResponse({"name": name, "done": True,
                                 "error": {"code": 1, "message": "Operation was cancelled."}})
        if task.outcome == RETRYABLE:
            return JSONResponse({"name": name, "done": True,
                                 "error": {"code": 14, "message": "The service is currently unavailable."}})
        response: dict[str, Any] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                                             "PredictLongRunningResponse"}
        if task.outcome == POLICY:
            response["generateVideoResponse"] = {
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["The prompt could not be submitted: it may violate policies."]}
        else:
            uri = f"{task.base}/v1beta/files/{task.id}:download?alt=media"
            response["generateVideoResponse"] = {"generatedSamples": [{"video": {"uri": uri}}]}
        return JSONResponse({"name": name, "done": True, "response": response})

    async def cancel(self, request: Request) -> Response:
        """``POST /v1beta/{operation}:cancel`` (google.longrunning.Operations.CancelOperation): an
        empty JSON object once cancellation started; an operation already done is refused."""
        await self.record(request)
        refused = self._authorized(request)
        if refused is not None:
            return refused
        op, _, method = request.path_params["op"].partition(":")
        if method != "cancel":
            return error(404, "Method not found.", "NOT_FOUND")
        task = self.tasks.get(op)
        if task is None or task.extra["model"] != request.path_params["model"]:
            return error(404, "Operation not found.", "NOT_FOUND")
        if self.phase(task) == "done" and task.outcome != NEVER:
            return error(400, "The operation is already done.", "FAILED_PRECONDITION")
        task.outcome = CANCELLED
        return JSONResponse({})

    async def download(self, request: Request) -> Response:
        await self.record(request)
        file_id, _, method = request.path_params["spec"].partition(":")
        if method != "download" or request.query_params.get("alt") != "media":
            return error(404, "Not found.", "NOT_FOUND")
        refused = self._authorized(request)
        if refused is not None:
            return refused
        if file_id not in self.tasks:
            return error(404, "File not found.", "NOT_FOUND")
        if self.script.download_status is not None:  # kept two days, then gone
            return error(self.script.download_status, "File has expired.", "NOT_FOUND")
        # Google answers with a redirect to a signed URL on another host; here: "localhost".
        port = request.url.port or 80
        return RedirectResponse(f"http://localhost:{port}/signed/{file_id}.mp4?sig=emulated", status_code=302)

    async def signed(self, request: Request) -> Response:
        seen = await self.record(request)
        self.signed_downloads.append(seen.headers)
        return self.file_response()

    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        raise NotImplementedError("the Gemini API takes no per-request callback")


def validate(body: Any) -> Response | None:
    if not isinstance(body, dict) or set(body) - {"instances", "parameters"}:
        return invalid("Invalid JSON payload received.")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return invalid("instances must hold exactly one instance")
    instance = instances[0]
    if set(instance) - _INSTANCE:
        unknown = sorted(set(instance) - _INSTANCE)
        return invalid(f"Invalid JSON payload received. Unknown name in instances[0]: {unknown}")
    if not isinstance(instance.get("prompt"), str) or not instance["prompt"].strip():
        return invalid("prompt is required")
    image = instance.get("image")
    if image is not None:
        if not isinstance(image, dict) or "gcsUri" in image:
            return invalid("image: only inline bytesBase64Encoded is supported in the Gemini API")
        if image.get("mimeType") not in ("image/png", "image/jpeg", "image/webp"):
            return invalid("image.mimeType is not supported")
        try:
            base64.b64decode(image.get("bytesBase64Encoded", ""), validate=True)
        except (binascii.Error, ValueError):
            return invalid("image.bytesBase64Encoded is not valid base64")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        return invalid("parameters must be an object")
    if "generateAudio" in parameters:
        return invalid("generateAudio parameter is not supported in Gemini API.")
    if set(parameters) - _PARAMETERS:
        return invalid(f"Unknown name in parameters: {sorted(set(parameters) - _PARAMETERS)}")
    if parameters.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
        return invalid("aspectRatio must be 16:9 or 9:16")
    resolution = parameters.get("resolution", "720p")
    if resolution not in ("720p", "1080p", "4k"):
        return invalid("resolution must be 720p, 1080p or 4k")
    duration = parameters.get("durationSeconds", 8)
    if type(duration) is not int or duration not in (4, 6, 8):
        return invalid("durationSeconds must be the number 4, 6 or 8")
    if resolution != "720p" and duration != 8:
        return invalid("durationSeconds must be 8 for 1080p and 4k")
    if parameters.get("sampleCount", 1) != 1:
        return invalid("sampleCount must be 1")
    return None
