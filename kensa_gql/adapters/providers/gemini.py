"""Veo 3.1 through the Gemini API: ``predictLongRunning`` and its long-running operation.

``POST /v1beta/models/{model}:predictLongRunning`` answers an operation name, polled with
``GET /v1beta/{name}`` until ``done``. The key travels in ``x-goog-api-key`` (never ``?key=``,
which would put it in every logged URL). The start frame goes inline as base64, so the adapter
fetches it through the safe fetcher. Results are file URIs on the API host that need the key
to download; the key is attached only when the URI really is on the configured API origin.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from kensa_gql.adapters.fetcher import fetch_image
from kensa_gql.adapters.providers.http import (
    RetryPolicy,
    VendorHttp,
    as_object,
    as_text,
    cannot_make,
    origin_of,
    result_url,
)
from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.errors import ContentRejected, ProviderError, ProviderUnavailable
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob, ResultFile
from kensa_gql.domain.videos import FailureCode

log = logging.getLogger(__name__)

MODEL = "veo-3.1-generate-preview"
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # inline requests are capped at 20 MB; base64 adds a third
_OPERATION = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,8}$")
# google.rpc.Code values that describe a passing condition, not the request.
# DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE
_RETRYABLE_RPC = frozenset({4, 8, 10, 13, 14})
_INVALID_ARGUMENT = 3
# A 400 that is about the account or region, not the request: another provider may serve it.
_UNAVAILABLE_STATUSES = ("FAILED_PRECONDITION",)
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})

ImageFetcher = Callable[[str], Awaitable[tuple[bytes, str]]]


def plan(model: str, duration: int, resolution: str, aspect_ratio: str) -> dict[str, Any] | None:
    """The ``parameters`` object, or None when Veo cannot make it (1080p needs 8 seconds)."""
    if model != "veo-3-1" or duration not in (4, 6, 8) or resolution not in ("720p", "1080p") \
            or aspect_ratio not in ("16:9", "9:16"):
        return None
    if resolution != "720p" and duration != 8:
        return None
    return {"aspectRatio": aspect_ratio, "resolution": resolution, "durationSeconds": duration,
            "sampleCount": 1}


def request_body(job: ProviderJob, image: tuple[bytes, str] | None = None) -> dict[str, Any]:
    parameters = plan(job.model, job.duration, job.resolution, job.aspect_ratio)
    if parameters is None:
        raise cannot_make("gemini", job)
    instance: dict[str, Any] = {"prompt": job.prompt}
    if image is not None:
        data, mime = image
        instance["image"] = {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime}
    return {"instances": [instance], "parameters": parameters}


class GeminiProvider:
    name = "gemini"

    def __init__(self, http: httpx.AsyncClient, *, api_key: str, base_url: str, poll_interval: float,
                 work_dir: Path, max_video_bytes: int, fetch: ImageFetcher | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.poll_interval = poll_interval
        self._key = api_key
        self._api = VendorHttp(http, vendor=self.name, base_url=base_url, headers={"x-goog-api-key": api_key},
                               secret=api_key, policy=policy)
        self._work_dir = work_dir
        self._max_video_bytes = max_video_bytes
        self._fetch = fetch or functools.partial(fetch_image, http, max_bytes=MAX_IMAGE_BYTES)

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return plan(spec.id, duration, resolution, aspect_ratio) is not None

    async def submit(self, job: ProviderJob) -> str:
        image = await self._fetch(job.start_image_url) if job.start_image_url is not None else None
        response = await self._api.send("POST", f"/v1beta/models/{MODEL}:predictLongRunning",
                                        json=request_body(job, image))
        if response.status_code != 200:
            raise self._failure(response, polling=False)
        name = self._api.json(response).get("name")
        if not isinstance(name, str) or len(name) > 256 or not _OPERATION.match(name):
            raise ProviderUnavailable("gemini: the response carried no usable operation name")
        return name

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        if not _OPERATION.match(task_id):
            raise ContentRejected("gemini: malformed operation name")
        response = await self._api.send("GET", f"/v1beta/{task_id}")
        if response.status_code != 200:
            raise self._failure(response, polling=True)
        return self.status_of(self._api.json(response), job)

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        """``POST /v1beta/{operation}:cancel`` (google.longrunning): best effort on Google's side; an
        operation that cannot be cancelled answers 4xx or 501 UNIMPLEMENTED, and then False."""
        if not _OPERATION.match(task_id):
            return False
        response = await self._api.send("POST", f"/v1beta/{task_id}:cancel", json={},
                                        final=lambda r: r.status_code == 501)
        return response.status_code == 200

    def _failure(self, response: httpx.Response, *, polling: bool) -> ProviderError:
        # Google answers a bad key with 400 INVALID_ARGUMENT; only the ErrorInfo reason tells it
        # apart from a bad request, and a bad key means "fail over", not "refuse the video".
        if _error_reasons(response) & _KEY_REASONS:
            return ProviderUnavailable(f"gemini: {self._api.message(response)} (HTTP {response.status_code})")
        return self._api.failure(response, polling=polling, unavailable_codes=_UNAVAILABLE_STATUSES)

    def status_of(self, operation: dict[str, Any], job: ProviderJob) -> JobStatus:
        if operation.get("done") is not True:
            return JobStatus(JobState.RUNNING)  # Gemini reports no progress: the runner estimates
        if "error" in operation:
            error = as_object(operation["error"])
            code = error.get("code")
            message = as_text(error.get("message")) or "operation failed"
            retryable = code in _RETRYABLE_RPC
            failure = (FailureCode.INVALID_INPUT if code == _INVALID_ARGUMENT
                       else FailureCode.PROVIDER_UNAVAILABLE if retryable else FailureCode.PROVIDER_ERROR)
            return JobStatus(JobState.FAILED, error=self._api.clean(f"gemini: {message}"), retryable=retryable,
                             failure=failure)
        generated = as_object(as_object(operation.get("response")).get("generateVideoResponse"))
        samples = generated.get("generatedSamples")
        video = as_object(samples[0]).get("video") if isinstance(samples, list) and samples else None
        if not isinstance(video, dict):
            filtered = _filtered_message(generated)
            if filtered is None:
                return JobStatus(JobState.FAILED, error="gemini: finished without a video", retryable=True,
                                 failure=FailureCode.RESULT_UNAVAILABLE)
            return JobStatus(JobState.FAILED, error=self._api.clean(filtered), failure=FailureCode.CONTENT_POLICY)
        if isinstance(video.get("encodedVideo"), str):
            return JobStatus(JobState.SUCCEEDED, progress=100,
                             result=ResultFile(path=self._write_inline(video["encodedVideo"], job)))
        url = result_url(video.get("uri"))
        if url is None:
            return JobStatus(JobState.FAILED, error="gemini: finished without a video", retryable=True,
                             failure=FailureCode.RESULT_UNAVAILABLE)
        # The file URI needs the key; a URI anywhere else must never receive it.
        headers = {"x-goog-api-key": self._key} if origin_of(url) == self._api.origin else {}
        return JobStatus(JobState.SUCCEEDED, progress=100, result=ResultFile(url=url, headers=headers))

    def _write_inline(self, encoded: str, job: ProviderJob) -> Path:
        if len(encoded) * 3 // 4 > self._max_video_bytes:
            raise ContentRejected(f"gemini: the video is larger than {self._max_video_bytes} bytes")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ContentRejected("gemini: the inline video is not valid base64") from exc
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self._work_dir, prefix=f"{job.video_uuid}-", suffix=".mp4",
                                         delete=False) as out:
            out.write(data)
        return Path(out.name)


def _error_reasons(response: httpx.Response) -> set[str]:
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return set()
    if not isinstance(details, list):
        return set()
    return {d["reason"] for d in details if isinstance(d, dict) and isinstance(d.get("reason"), str)}


def _filtered_message(generated: dict[str, Any]) -> str | None:
    """The safety filter's verdict when it removed the video (final: the content was refused)."""
    count = generated.get("raiMediaFilteredCount")
    reasons = generated.get("raiMediaFilteredReasons")
    if isinstance(reasons, list) and reasons:
        return "gemini: blocked by safety filters: " + "; ".join(str(r) for r in reasons)
    if isinstance(count, int) and count > 0:
        return "gemini: blocked by safety filters"
    return None
