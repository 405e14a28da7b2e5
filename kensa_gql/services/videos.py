"""Video use cases: generate, read, list, delete."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kensa_gql import tracing
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import BadUserInput, Conflict, IdempotencyKeyReused, NotFound, StorageUnavailable
from kensa_gql.domain.paging import Page
from kensa_gql.domain.ports import Storage
from kensa_gql.domain.text import check_strings, check_text
from kensa_gql.domain.videos import Video, media_keys
from kensa_gql.services import ledger
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000
# A first request still "processing" after this long died half-way; its key may be reused.
IDEMPOTENCY_ABANDONED_MS = 60_000
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class Generated:
    video: Video
    replayed: bool


def _request_hash(raw: Mapping[str, Any]) -> str:
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_or_none(value: str) -> str | None:
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # already the form we issue: skip the parse on the read path
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


async def generate_video(raw: Mapping[str, Any], principal: Principal, *, idempotency_key: str | None = None,
                         deps: Deps) -> Generated:
    """Validate and price the request, freeze the credits and queue the task, in one transaction."""
    # First: every string of the request (hashed whole below) and the key must be storable text.
    check_strings(raw)
    if idempotency_key is not None:
        check_text(idempotency_key, "idempotencyKey")
    req = deps.catalog.validate(raw)
    spec = deps.catalog.get(req.model)
    assert spec is not None
    route = deps.router.route_for(spec, req)
    if req.start_image_url is not None:
        await deps.check_host(urlsplit(req.start_image_url).hostname or "")
    price = spec.price(req.duration, req.resolution)

    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise BadUserInput(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters", field="idempotencyKey")
        replay = await _begin_idempotent(principal, idempotency_key, _request_hash(raw), deps=deps)
        if replay is not None:
            return Generated(replay, replayed=True)

    try:
        async with deps.db.writing() as uow:
            now = now_ms()
            store = VideosStore(uow)
            video = await store.add(uuid=str(uuidlib.uuid4()), user_id=principal.user_id, prompt=req.prompt,
                                    model=req.model, duration=req.duration, resolution=req.resolution,
                                    aspect_ratio=req.aspect_ratio, start_image_url=req.start_image_url,
                                    credits=price, now_ms=now)
            await ledger.freeze(uow, user_id=principal.user_id, video_id=video.id, video_uuid=video.uuid,
                                amount=price, now_ms=now)
            await store.add_task(video.id, route, now, traceparent=tracing.traceparent())
            if idempotency_key is not None:
                await store.complete_idempotency(principal.user_id, idempotency_key, video.uuid)
            await uow.commit()
    except BaseException:
        if idempotency_key is not None:
            # Only successes are remembered: a 402 may be retried with the same key after a top-up.
            async with deps.db.writing() as uow:
                await VideosStore(uow).drop_idempotency(principal.user_id, idempotency_key)
                await uow.commit()
        raise
    deps.wake_runner()
    await deps.publisher.video_changed(video)
    return Generated(video, replayed=False)


async def _begin_idempotent(principal: Principal, key: str, request_hash: str, *, deps: Deps) -> Video | None:
    """Claim the key, or return the video its first request made; raise if it cannot be used."""
    async with deps.db.writing() as uow:
        store = VideosStore(uow)
        now = now_ms()
        record = await store.idempotency(principal.user_id, key)
        if record is None:
            if not await store.insert_idempotency(principal.user_id, key, request_hash, now):
                raise Conflict("a request with this Idempotency-Key is still being processed")
            await uow.commit()
            return None
        expired = record.created_at_ms < now - IDEMPOTENCY_WINDOW_MS
        abandoned = record.state == "processing" and record.created_at_ms < now - IDEMPOTENCY_ABANDONED_MS
        if expired or abandoned:
            await store.restart_idempotency(principal.user_id, key, request_hash, now)
            await uow.commit()
            return None
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused()
        if record.state != "done" or record.video_uuid is None:
            raise Conflict("a request with this Idempotency-Key is still being processed")
        video = await store.get_by_uuid(record.video_uuid)
        if video is None:
            raise NotFound()
        return video


async def get_video(uuid: str, principal: Principal, *, deps: Deps) -> Video:
    """The caller's video; NotFound for unknown, deleted or foreign uuids alike."""
    canonical = _uuid_or_none(uuid)
    if canonical is None:
        raise NotFound()
    video = await deps.db.reads.owned_video(canonical, principal.user_id)
    if video is None:
        raise NotFound()
    return video


async def find_video(uuid: str, principal: Principal, *, deps: Deps) -> Video | None:
    """Like get_video, but None instead of NotFound (GraphQL's nullable ``video``)."""
    try:
        return await get_video(uuid, principal, deps=deps)
    except NotFound:
        return None


async def list_videos(principal: Principal, page: Page, *, deps: Deps) -> tuple[list[Video], int]:
    """The caller's non-deleted videos, newest first."""
    return await deps.db.reads.owned_videos(principal.user_id, offset=page.offset, limit=page.page_size)


async def delete_video(uuid: str, principal: Principal, *, deps: Deps) -> str:
    """Soft-delete: the video and its media disappear; if in flight it still finishes and settles.

    The row stays (marked deleted) for the ledger and the history; its files are removed from
    storage here, and a runner that finishes it later removes what it stored (runner._finish).
    """
    canonical = _uuid_or_none(uuid)
    if canonical is None:
        raise NotFound()
    async with deps.db.writing() as uow:
        store = VideosStore(uow)
        video = await store.get_owned(canonical, principal.user_id)
        if video is None or not await store.soft_delete(video.id, now_ms()):
            raise NotFound()
        await uow.commit()
    await unpublish_media(canonical, storage=deps.storage)
    # Watchers of the video learn at once that it is gone for them.
    await deps.publisher.video_changed(dataclasses.replace(video, deleted=True))
    return canonical


async def unpublish_media(uuid: str, *, storage: Storage) -> bool:
    """Remove a video's MP4 and thumbnail from storage (deleted, or failed while uploading).

    Best effort: False (logged) if the storage refused; what decided it (the committed delete,
    the failure) stands either way, and the operator learns which file is left.
    """
    removed = True
    for key in media_keys(uuid):
        try:
            await storage.delete(key)
        except StorageUnavailable as exc:
            log.warning("video %s: its file %s could not be removed: %s", uuid, key, exc.message)
            removed = False
    return removed
