"""Wan 2.6 on Alibaba Model Studio (DashScope), through its async task API.

``POST /api/v1/services/aigc/video-generation/video-synthesis`` with ``X-DashScope-Async: enable``
creates a task; ``GET /api/v1/tasks/{id}`` reports it. Text-to-video (``wan2.6-t2v``) takes the
frame size as ``W*H`` pixels; image-to-video (``wan2.6-i2v``) takes ``img_url`` and a
``resolution`` tier (``720P``), and its output follows the image's shape. No progress is reported.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import httpx

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

SIZES: dict[str, dict[str, str]] = {
    "720p": {"16:9": "1280*720", "9:16": "720*1280", "1:1": "960*960", "4:3": "1088*832", "3:4": "832*1088"},
    "1080p": {"16:9": "1920*1080", "9:16": "1080*1920", "1:1": "1440*1440", "4:3": "1632*1248",
              "3:4": "1248*1632"},
}
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Codes that mean the account, not the request: fail over to another provider.
_UNAVAILABLE_CODES = ("Arrearage", "AccessDenied", "AccessDenied.Unpurchased", "InvalidApiKey",
                      "Throttling", "Throttling.RateQuota", "Throttling.AllocationQuota")
# Task failures that may pass (overload, internal errors); everything else, moderation first, is final.
_RETRYABLE_TASK_CODES = ("InternalError", "Throttling", "ServiceUnavailable", "SystemError", "RequestTimeOut")
# Moderation (DataInspectionFailed, data_inspection_failed, IPInfringementSuspect) and input refusals.
_POLICY_CODES = ("DataInspection", "data_inspection", "IPInfringement")
_INVALID_CODES = ("InvalidParameter", "InvalidFile", "BadRequest")


def plan(model: str, duration: int, resolution: str, aspect_ratio: str,
         with_image: bool) -> dict[str, Any] | None:
    """``model`` and ``parameters`` for this video, or None if Wan cannot make it."""
    if model != "wan-2-6" or duration not in (5, 10, 15) or aspect_ratio not in SIZES.get(resolution, {}):
        return None
    if with_image:
        return {"model": "wan2.6-i2v", "parameters": {"resolution": resolution.upper(), "duration": duration}}
    size = SIZES[resolution][aspect_ratio]
    return {"model": "wan2.6-t2v", "parameters": {"size": size, "duration": duration}}


def request_body(job: ProviderJob) -> dict[str, Any]:
    chosen = plan(job.model, job.duration, job.resolution, job.aspect_ratio, job.start_image_url is not None)
    if chosen is None:
        raise cannot_make("dashscope", job)
    task_input: dict[str, Any] = {"prompt": job.prompt}
    if job.start_image_url is not None:
        task_input["img_url"] = job.start_image_url
    return {"model": chosen["model"], "input": task_input, "parameters": chosen["parameters"]}


class DashScopeProvider:
    name = "dashscope"

    def __init__(self, http: httpx.AsyncClient, *, api_key: str, base_url: str, poll_interval: float,
                 policy: RetryPolicy | None = None) -> None:
        self.poll_interval = poll_interval
        self._api = VendorHttp(http, vendor=self.name, base_url=base_url,
                               headers={"Authorization": f"Bearer {api_key}"}, secret=api_key, policy=policy)

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return plan(spec.id, duration, resolution, aspect_ratio, with_image) is not None

    async def submit(self, job: ProviderJob) -> str:
        response = await self._api.send("POST", "/api/v1/services/aigc/video-generation/video-synthesis",
                                        json=request_body(job), headers={"X-DashScope-Async": "enable"})
        if response.status_code != 200:
            raise self._api.failure(response, polling=False, unavailable_codes=_UNAVAILABLE_CODES,
                                    policy_codes=_POLICY_CODES)
        task_id = as_object(self._api.json(response).get("output")).get("task_id")
        if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
            raise ProviderUnavailable("dashscope: the create response carried no usable task id")
        return task_id

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        response = await self._api.send("GET", f"/api/v1/tasks/{quote(task_id, safe='')}")
        if response.status_code != 200:
            raise self._api.failure(response, polling=True, unavailable_codes=_UNAVAILABLE_CODES)
        return self.status_of(self._api.json(response))

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        """``POST /api/v1/tasks/{id}/cancel``: DashScope cancels a task still PENDING; a running or
        finished one is refused (4xx), and then False."""
        response = await self._api.send("POST", f"/api/v1/tasks/{quote(task_id, safe='')}/cancel")
        return response.status_code == 200

    def status_of(self, body: dict[str, Any]) -> JobStatus:
        output = as_object(body.get("output"))
        status = output.get("task_status")
        if status == "PENDING":
            return JobStatus(JobState.QUEUED)
        if status == "RUNNING":
            return JobStatus(JobState.RUNNING)
        if status == "SUCCEEDED":
            url = result_url(output.get("video_url"))
            if url is None:
                return JobStatus(JobState.FAILED, error="dashscope: succeeded without a video_url",
                                 retryable=True, failure=FailureCode.RESULT_UNAVAILABLE)
            return JobStatus(JobState.SUCCEEDED, progress=100, result=ResultFile(url=url))
        if status == "FAILED":
            code, message = as_text(output.get("code")), as_text(output.get("message")) or "task failed"
            retryable = code.startswith(_RETRYABLE_TASK_CODES)
            return JobStatus(JobState.FAILED, error=self._api.clean(f"dashscope: {code}: {message}" if code
                                                                      else f"dashscope: {message}"),
                             retryable=retryable, failure=failure_of(code, retryable=retryable,
                                                                     policy=_POLICY_CODES, invalid=_INVALID_CODES))
        if status == "CANCELED":
            return JobStatus(JobState.FAILED, error="dashscope: the task was cancelled")
        if status == "UNKNOWN":  # task ids are queryable for 24 hours only
            return JobStatus(JobState.FAILED, error="dashscope: the task is unknown or expired",
                             failure=FailureCode.RESULT_UNAVAILABLE)
        log.warning("dashscope reported an unknown task status %r", status)
        return JobStatus(JobState.RUNNING)
