"""How domain values look on the wire, shared by REST and GraphQL so they cannot drift apart."""

from __future__ import annotations

import functools
import time
from typing import Any

from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.ledger import Entry
from kensa_gql.domain.videos import Video


def timestamp(ms: int | None) -> str | None:
    """UTC ISO 8601 with milliseconds and ``Z``: ``2026-03-13T10:00:00.000Z``."""
    return None if ms is None else iso_timestamp(ms)


# A video's times never change and clients read the same videos again and again (polling its
# status, paging a list), while formatting one costs about a microsecond: two on every read.
# Callers formatting a page of videos call this one directly: one Python frame less per time.
@functools.lru_cache(maxsize=8192)
def iso_timestamp(ms: int) -> str:
    """``timestamp`` of a time that is there (not None)."""
    seconds, millis = divmod(ms, 1000)
    # time.gmtime rather than an aware datetime: the same text at half the cost.
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)) + f"{millis:03d}Z"


def video_detail(v: Video) -> dict[str, Any]:
    """``GET /api/v1/video/{uuid}``: exactly these keys."""
    return {
        "uuid": v.uuid, "prompt": v.prompt, "model": v.model, "status": v.status.legacy,
        "provider": v.provider, "videoUrl": v.video_url, "thumbnailUrl": v.thumbnail_url,
        "startImageUrl": v.start_image_url, "duration": v.duration, "resolution": v.resolution,
        "aspectRatio": v.aspect_ratio, "fileSize": v.file_size, "creditsUsed": v.credits_used,
        "generationTime": v.generation_time, "createdAt": timestamp(v.created_at_ms),
        "completedAt": timestamp(v.completed_at_ms),
    }


def video_event(v: Video) -> dict[str, Any]:
    """A webhook's ``data``: the detail JSON with the task's ``progress``."""
    return {**video_detail(v), "progress": v.progress}


def video_summary(v: Video) -> dict[str, Any]:
    """An item of ``GET /api/v1/video/list``: exactly these keys."""
    return {
        "uuid": v.uuid, "prompt": v.prompt, "model": v.model, "status": v.status.legacy,
        "videoUrl": v.video_url, "thumbnailUrl": v.thumbnail_url, "duration": v.duration,
        "aspectRatio": v.aspect_ratio, "creditsUsed": v.credits_used, "createdAt": timestamp(v.created_at_ms),
        "completedAt": timestamp(v.completed_at_ms),
    }


def video_created(v: Video) -> dict[str, Any]:
    """``POST /api/v1/video/generate``. A replayed request answers what the first one did: PENDING."""
    return {"uuid": v.uuid, "status": "PENDING", "model": v.model, "creditsUsed": v.credits_used,
            "createdAt": timestamp(v.created_at_ms)}


def video_waited(v: Video) -> dict[str, Any]:
    """``POST /video/generate`` held by ``Prefer: wait``: the same keys, the status it reached."""
    return {**video_created(v), "status": video_task(v)["status"]}


def video_task(v: Video) -> dict[str, Any]:
    return {"uuid": v.uuid, "status": v.status.legacy, "progress": v.progress}


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    return {"id": spec.id, "name": spec.name, "provider": spec.vendor, "modes": list(spec.modes),
            "maxDuration": spec.max_duration, "resolutions": list(spec.resolutions),
            "aspectRatios": list(spec.aspect_ratios), "enabled": spec.enabled}


def credit_entry(e: Entry) -> dict[str, Any]:
    return {"id": str(e.id), "transNo": e.trans_no, "transType": e.type, "credits": e.credits,
            "balanceAfter": e.balance_after, "videoUuid": e.video_uuid, "createdAt": timestamp(e.created_at_ms)}
