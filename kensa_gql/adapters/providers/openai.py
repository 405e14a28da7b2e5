"""Sora 2 through the OpenAI ``/videos`` API shape (OpenAI until its shutdown; Azure OpenAI).

``POST /v1/videos`` creates a video (JSON, or multipart when a start image is uploaded as
``input_reference``), ``GET /v1/videos/{id}`` reports it with a ``progress`` percentage, and the
file comes from ``GET /v1/videos/{id}/content`` with the API key. The start image must match the
output size exactly, so it is fetched safely and fitted to that size first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from kensa_gql.adapters.fetcher import fetch_image
from kensa_gql.adapters.providers.http import (
    RetryPolicy,
    VendorHttp,
    as_object,
    as_text,
    cannot_make,
    failure_of,
)
from kensa_gql.adapters.providers.images import fit_png
from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.errors import ProviderUnavailable
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob, ResultFile

log = logging.getLogger(__name__)

SIZES = {"16:9": "1280x720", "9:16": "720x1280"}
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# A 429 that waiting will not fix.
_QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached")
_RETRYABLE_VIDEO_CODES = ("server_error", "internal_error", "rate_limit_exceeded", "timeout")
# Moderation (moderation_blocked, content_policy_violation) and refused inputs.
_POLICY_CODES = ("moderation", "content_policy")
_INVALID_CODES = ("invalid_",)

ImageFetcher = Callable[[str], Awaitable[tuple[bytes, str]]]


def plan(model: str, duration: int, resolution: str, aspect_ratio: str) -> dict[str, str] | None:
    """``model``, ``seconds`` (a string) and ``size``, or None when the API cannot make it."""
    if model != "sora-2" or duration not in (4, 8, 12) or resolution != "720p" or aspect_ratio not in SIZES:
        return None
    return {"model": "sora-2", "seconds": str(duration), "size": SIZES[aspect_ratio]}


def request_fields(job: ProviderJob) -> dict[str, str]:
    fields = plan(job.model, job.duration, job.resolution, job.aspect_ratio)
    if fields is None:
        raise cannot_make("openai", job)
    return {"prompt": job.prompt, **fields}


def _is_quota(response: httpx.Response) -> bool:
    try:
        error = as_object(as_object(response.json()).get("error"))
    except ValueError:
        return False
    return error.get("code") in _QUOTA_CODES or error.get("type") in _QUOTA_CODES


class OpenAIProvider:
    name = "openai"

    def __init__(self, http: httpx.AsyncClient, *, api_key: str, base_url: str, poll_interval: float,
                 fetch: ImageFetcher | None = None, policy: RetryPolicy | None = None) -> None:
        self.poll_interval = poll_interval
        self._key = api_key
        self._api = VendorHttp(http, vendor=self.name, base_url=base_url,
                               headers={"Authorization": f"Bearer {api_key}"}, secret=api_key, policy=policy)
        self._fetch = fetch or functools.partial(fetch_image, http, max_bytes=MAX_IMAGE_BYTES)

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return plan(spec.id, duration, resolution, aspect_ratio) is not None

    async def submit(self, job: ProviderJob) -> str:
        fields = request_fields(job)
        if job.start_image_url is None:
            response = await self._api.send("POST", "/v1/videos", json=fields, final=_is_quota)
        else:
            data, _kind = await self._fetch(job.start_image_url)
            width, height = (int(n) for n in fields["size"].split("x"))
            png = await asyncio.to_thread(fit_png, data, width, height)
            response = await self._api.send("POST", "/v1/videos", data=fields, final=_is_quota,
                                            files={"input_reference": ("reference.png", png, "image/png")})
        if response.status_code != 200:
            if response.status_code == 429:  # an exhausted quota: another provider, not a retry
                raise ProviderUnavailable(f"openai: {self._api.message(response)} (HTTP 429)")
            raise self._api.failure(response, polling=False, policy_codes=_POLICY_CODES)
        video_id = self._api.json(response).get("id")
        if not isinstance(video_id, str) or not _VIDEO_ID.match(video_id):
            raise ProviderUnavailable("openai: the create response carried no usable video id")
        return video_id

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        response = await self._api.send("GET", f"/v1/videos/{quote(task_id, safe='')}")
        if response.status_code != 200:
            raise self._api.failure(response, polling=True)
        return self.status_of(self._api.json(response), task_id)

    def status_of(self, video: dict[str, Any], video_id: str) -> JobStatus:
        status = video.get("status")
        progress = video.get("progress") if isinstance(video.get("progress"), int) else None
        if status == "queued":
            return JobStatus(JobState.QUEUED, progress=progress)
        if status == "in_progress":
            return JobStatus(JobState.RUNNING, progress=progress)
        if status == "completed":
            # The content URL is ours to build and needs the key; it expires about an hour after completion.
            url = f"{self._api.base_url}/v1/videos/{quote(video_id, safe='')}/content"
            headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/binary"}
            return JobStatus(JobState.SUCCEEDED, progress=100, result=ResultFile(url=url, headers=headers))
        if status == "failed":
            error = as_object(video.get("error"))
            code, message = as_text(error.get("code")), as_text(error.get("message")) or "generation failed"
            text = f"openai: {code}: {message}" if code else f"openai: {message}"
            retryable = code in _RETRYABLE_VIDEO_CODES
            return JobStatus(JobState.FAILED, error=self._api.clean(text), retryable=retryable,
                             failure=failure_of(code, retryable=retryable, policy=_POLICY_CODES,
                                                invalid=_INVALID_CODES))
        log.warning("openai reported an unknown video status %r", status)
        return JobStatus(JobState.RUNNING, progress=progress)
