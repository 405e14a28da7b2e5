"""EvoLink (api.evolink.ai): one async task API in front of all four models.

``POST /v1/videos/generations`` creates a task, ``GET /v1/tasks/{id}`` reports it, with
``Authorization: Bearer``. Each of our models maps to EvoLink's model name for the requested
duration (its ``sora-2-preview`` takes 4/8/12 s, its ``sora-2`` 10/15 s) and its field names:
``aspect_ratio``, ``quality``, ``duration``, ``image_urls``, optionally ``callback_url``.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import httpx

from kensa_gql.adapters.providers.callbacks import CallbackUrls
from kensa_gql.adapters.providers.http import (
    RetryPolicy,
    VendorHttp,
    as_object,
    as_text,
    cannot_make,
    failure_of,
    result_url,
)
from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.errors import ProviderUnavailable
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob, ResultFile
from kensa_gql.domain.videos import FailureCode

log = logging.getLogger(__name__)

_TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_WIDE = ("16:9", "9:16")
_WAN_ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4")
_SEEDANCE_ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")

# Task-level error codes (EvoLink's own client, error-handler.ts): these may pass, so another
# provider (or a later try) can succeed; everything else, content policy first, is final.
RETRYABLE_CODES = frozenset({"generation_timeout", "quota_exceeded", "resource_exhausted",
                             "generation_failed_no_content", "service_error", "service_unavailable",
                             "unknown_error"})
_POLICY_CODES = ("content_policy",)
_INVALID_CODES = ("invalid_parameters", "image_dimension_mismatch", "image_processing_error")


def plan(model: str, duration: int, resolution: str, aspect_ratio: str,
         with_image: bool) -> dict[str, Any] | None:
    """EvoLink's body (without prompt, image and callback) for this video, or None if it cannot make it."""
    if model == "sora-2":
        if resolution != "720p" or aspect_ratio not in _WIDE:
            return None
        if duration in (4, 8, 12):
            return {"model": "sora-2-preview", "aspect_ratio": aspect_ratio, "duration": duration}
        if duration in (10, 15):
            return {"model": "sora-2", "aspect_ratio": aspect_ratio, "duration": duration}
        return None
    if model == "veo-3-1":
        if duration not in (4, 6, 8) or resolution not in ("720p", "1080p") or aspect_ratio not in _WIDE:
            return None
        return {"model": "veo-3.1-generate-preview",
                "generation_type": "FIRST&LAST" if with_image else "TEXT",
                "aspect_ratio": aspect_ratio, "duration": duration, "quality": resolution}
    if model == "wan-2-6":
        if duration not in (5, 10, 15) or resolution not in ("720p", "1080p") \
                or aspect_ratio not in _WAN_ASPECTS:
            return None
        if with_image:  # the output follows the image's shape; this model has no aspect_ratio field
            return {"model": "wan2.6-image-to-video", "quality": resolution, "duration": duration}
        return {"model": "wan2.6-text-to-video", "aspect_ratio": aspect_ratio, "quality": resolution,
                "duration": duration}
    if model == "seedance-1-5":
        if not 4 <= duration <= 12 or resolution not in ("480p", "720p", "1080p") \
                or aspect_ratio not in _SEEDANCE_ASPECTS:
            return None
        return {"model": "seedance-1.5-pro", "duration": duration, "quality": resolution,
                "aspect_ratio": aspect_ratio, "generate_audio": True}
    return None


def request_body(job: ProviderJob, callback_url: str | None = None) -> dict[str, Any]:
    body = plan(job.model, job.duration, job.resolution, job.aspect_ratio, job.start_image_url is not None)
    if body is None:
        raise cannot_make("evolink", job)
    body = {"model": body.pop("model"), "prompt": job.prompt, **body}
    if job.start_image_url is not None:
        body["image_urls"] = [job.start_image_url]
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


class EvolinkProvider:
    name = "evolink"

    def __init__(self, http: httpx.AsyncClient, *, api_key: str, base_url: str, poll_interval: float,
                 callbacks: CallbackUrls | None = None, policy: RetryPolicy | None = None) -> None:
        self.poll_interval = poll_interval
        self._api = VendorHttp(http, vendor=self.name, base_url=base_url,
                               headers={"Authorization": f"Bearer {api_key}"}, secret=api_key, policy=policy)
        self._callbacks = callbacks

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return plan(spec.id, duration, resolution, aspect_ratio, with_image) is not None

    async def submit(self, job: ProviderJob) -> str:
        callback = self._callbacks.url_for(self.name, job.video_uuid) if self._callbacks else None
        response = await self._api.send("POST", "/v1/videos/generations", json=request_body(job, callback))
        if response.status_code != 200:
            raise self._api.failure(response, polling=False, policy_codes=_POLICY_CODES)
        task_id = self._api.json(response).get("id")
        if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
            raise ProviderUnavailable("evolink: the create response carried no usable task id")
        return task_id

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        response = await self._api.send("GET", f"/v1/tasks/{quote(task_id, safe='')}")
        if response.status_code != 200:
            raise self._api.failure(response, polling=True)
        return self.status_of(self._api.json(response))

    def status_of(self, task: dict[str, Any]) -> JobStatus:
        status = task.get("status")
        progress = task.get("progress") if isinstance(task.get("progress"), int) else None
        if status == "pending":
            return JobStatus(JobState.QUEUED, progress=progress)
        if status == "processing":
            return JobStatus(JobState.RUNNING, progress=progress)
        if status == "completed":
            url = result_url(_first_result(task))
            if url is None:
                return JobStatus(JobState.FAILED, error="evolink: completed without a result URL",
                                 retryable=True, failure=FailureCode.RESULT_UNAVAILABLE)
            return JobStatus(JobState.SUCCEEDED, progress=100, result=ResultFile(url=url))
        if status in ("failed", "cancelled", "canceled"):
            error = as_object(task.get("error"))
            code, message = as_text(error.get("code")), as_text(error.get("message"))
            text = ": ".join(part for part in (code, message) if part) or f"task {status}"
            retryable = code in RETRYABLE_CODES
            failure = (FailureCode.RESULT_UNAVAILABLE if code == "resource_not_found"
                       else failure_of(code, retryable=retryable, policy=_POLICY_CODES, invalid=_INVALID_CODES))
            return JobStatus(JobState.FAILED, error=self._api.clean(f"evolink: {text}"), retryable=retryable,
                             failure=failure)
        # Not in the documented enum: keep polling; the task timeout bounds it.
        log.warning("evolink reported an unknown task status %r", status)
        return JobStatus(JobState.RUNNING, progress=progress)


def _first_result(task: dict[str, Any]) -> Any:
    results = task.get("results")
    if isinstance(results, list) and results:
        return results[0]
    data = task.get("result_data")  # EvoLink's own client also reads this shape
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0].get("video_url")
    return None
