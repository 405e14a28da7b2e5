"""Seedance 1.5 Pro on BytePlus ModelArk, or on Volcengine Ark when the base URL points there.

``POST /api/v3/contents/generations/tasks`` creates a task from a ``content`` list (one text item,
optionally an ``image_url`` item with ``role: first_frame``); ``GET .../tasks/{id}`` reports it.
Both platforms share the API; only the model id differs (Volcengine prefixes ``doubao-``).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlsplit

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

BYTEPLUS_MODEL = "seedance-1-5-pro-251215"
VOLCENGINE_MODEL = "doubao-seedance-1-5-pro-251215"
_VOLCENGINE_HOSTS = (".volces.com", ".volcengineapi.com")
_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
_TASK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Account-level refusals on a 4xx: fail over rather than blame the request.
_UNAVAILABLE_CODES = ("AccountOverdueError", "ModelNotOpen", "AuthenticationError", "AccessDenied",
                      "QuotaExceeded", "RateLimitExceeded", "ServerOverloaded")
_RETRYABLE_TASK_CODES = ("InternalServiceError", "ServerOverloaded", "ServiceUnavailable",
                         "RateLimitExceeded", "QuotaExceeded")
# Moderation (Input/OutputVideo/InputImage...SensitiveContentDetected) and input refusals.
_POLICY_CODES = ("SensitiveContent",)
_INVALID_CODES = ("InvalidParameter", "InvalidArgument", "InvalidImage")


def model_for(base_url: str) -> str:
    host = (urlsplit(base_url).hostname or "").lower()
    return VOLCENGINE_MODEL if host.endswith(_VOLCENGINE_HOSTS) else BYTEPLUS_MODEL


def plan(model: str, duration: int, resolution: str, aspect_ratio: str) -> dict[str, Any] | None:
    """The generation fields for this video, or None when Seedance cannot make it."""
    if model != "seedance-1-5" or not 4 <= duration <= 12 or resolution not in ("480p", "720p", "1080p") \
            or aspect_ratio not in _RATIOS:
        return None
    # Explicit where the sources disagree on the default (audio) or a default would surprise
    # users (a watermark): our prices include audio.
    return {"resolution": resolution, "ratio": aspect_ratio, "duration": duration, "generate_audio": True,
            "watermark": False}


def request_body(job: ProviderJob, *, vendor_model: str, callback_url: str | None = None) -> dict[str, Any]:
    fields = plan(job.model, job.duration, job.resolution, job.aspect_ratio)
    if fields is None:
        raise cannot_make("ark", job)
    content: list[dict[str, Any]] = [{"type": "text", "text": job.prompt}]
    if job.start_image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": job.start_image_url},
                        "role": "first_frame"})
    body: dict[str, Any] = {"model": vendor_model, "content": content, **fields}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


class ArkProvider:
    name = "ark"

    def __init__(self, http: httpx.AsyncClient, *, api_key: str, base_url: str, poll_interval: float,
                 callbacks: CallbackUrls | None = None, policy: RetryPolicy | None = None) -> None:
        self.poll_interval = poll_interval
        self.vendor_model = model_for(base_url)
        self._api = VendorHttp(http, vendor=self.name, base_url=base_url,
                               headers={"Authorization": f"Bearer {api_key}"}, secret=api_key, policy=policy)
        self._callbacks = callbacks

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return plan(spec.id, duration, resolution, aspect_ratio) is not None

    async def submit(self, job: ProviderJob) -> str:
        callback = self._callbacks.url_for(self.name, job.video_uuid) if self._callbacks else None
        body = request_body(job, vendor_model=self.vendor_model, callback_url=callback)
        response = await self._api.send("POST", "/api/v3/contents/generations/tasks", json=body)
        if response.status_code != 200:
            raise self._api.failure(response, polling=False, unavailable_codes=_UNAVAILABLE_CODES,
                                    policy_codes=_POLICY_CODES)
        task_id = self._api.json(response).get("id")
        if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
            raise ProviderUnavailable("ark: the create response carried no usable task id")
        return task_id

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        path = f"/api/v3/contents/generations/tasks/{quote(task_id, safe='')}"
        response = await self._api.send("GET", path)
        if response.status_code != 200:
            raise self._api.failure(response, polling=True, unavailable_codes=_UNAVAILABLE_CODES)
        return self.status_of(self._api.json(response))

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        """``DELETE /contents/generations/tasks/{id}``: Ark cancels a task still queued (for a finished
        one it deletes the record); a running task is refused (4xx), and then False."""
        response = await self._api.send("DELETE", f"/api/v3/contents/generations/tasks/{quote(task_id, safe='')}")
        return response.status_code == 200

    def status_of(self, task: dict[str, Any]) -> JobStatus:
        status = task.get("status")
        if status == "queued":
            return JobStatus(JobState.QUEUED)
        if status == "running":
            return JobStatus(JobState.RUNNING)
        if status == "succeeded":
            url = result_url(as_object(task.get("content")).get("video_url"))
            if url is None:
                return JobStatus(JobState.FAILED, error="ark: succeeded without a video_url", retryable=True,
                                 failure=FailureCode.RESULT_UNAVAILABLE)
            return JobStatus(JobState.SUCCEEDED, progress=100, result=ResultFile(url=url))
        if status == "failed":
            error = as_object(task.get("error"))
            code, message = as_text(error.get("code")), as_text(error.get("message")) or "task failed"
            text = f"ark: {code}: {message}" if code else f"ark: {message}"
            retryable = code.startswith(_RETRYABLE_TASK_CODES)
            return JobStatus(JobState.FAILED, error=self._api.clean(text), retryable=retryable,
                             failure=failure_of(code, retryable=retryable, policy=_POLICY_CODES,
                                                invalid=_INVALID_CODES))
        if status == "expired":  # not started within execution_expires_after: the vendor was too busy
            return JobStatus(JobState.FAILED, error="ark: the task expired before it ran", retryable=True,
                             failure=FailureCode.PROVIDER_UNAVAILABLE)
        if status in ("cancelled", "canceled"):
            return JobStatus(JobState.FAILED, error="ark: the task was cancelled")
        # Relays also say pending/processing; anything unknown keeps polling until the task timeout.
        if status not in ("pending", "processing"):
            log.warning("ark reported an unknown task status %r", status)
        return JobStatus(JobState.RUNNING)
