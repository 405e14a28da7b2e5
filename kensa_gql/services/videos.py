"""Video use cases: generate, read, list, cancel, delete, retry."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kensa_gql import tracing
from kensa_gql.adapters.db.express import Express, NewVideo
from kensa_gql.adapters.db.ledger_store import LedgerRaceError
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.adapters.db.videos_store import Task, VideosStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.catalog import GenerateRequest
from kensa_gql.domain.errors import (
    BadUserInput,
    Conflict,
    IdempotencyKeyReused,
    InvalidTransition,
    NotFound,
    ProviderError,
    StorageUnavailable,
)
from kensa_gql.domain.paging import Page
from kensa_gql.domain.ports import Cancellable, ProviderJob, Storage
from kensa_gql.domain.text import check_strings, check_text
from kensa_gql.domain.videos import (
    MAX_DEADLINE_SECONDS,
    MIN_DEADLINE_SECONDS,
    CancelOutcome,
    FailureCode,
    Video,
    VideoStatus,
    can_transition,
    media_keys,
)
from kensa_gql.services import ledger
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps
from kensa_gql.services.webhook_endpoints import VideoWebhook, attach_video_webhook, video_webhook_of
from kensa_gql.services.webhook_events import record_video_event

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000
# A first request still "processing" after this long died half-way; its key may be reused.
IDEMPOTENCY_ABANDONED_MS = 60_000
MAX_IDEMPOTENCY_KEY = 255
# A stop retries when the runner moved the video between its read and its compare-and-set.
STOP_ATTEMPTS = 5
# How long a stop waits for the vendor's own cancel call (best effort: ours is already committed).
PROVIDER_CANCEL_SECONDS = 10.0


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


def check_deadline(seconds: int, field: str = "deadlineSeconds") -> int:
    """A request's deadline in seconds, within 5 s and 24 h; BadUserInput naming ``field`` otherwise."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) \
            or not MIN_DEADLINE_SECONDS <= seconds <= MAX_DEADLINE_SECONDS:
        raise BadUserInput(f"{field}: from {MIN_DEADLINE_SECONDS} seconds to {MAX_DEADLINE_SECONDS // 3600} "
                           "hours", field=field)
    return seconds


async def generate_video(raw: Mapping[str, Any], principal: Principal, *, idempotency_key: str | None = None,
                         deadline_seconds: int | None = None, deps: Deps) -> Generated:
    """Validate and price the request, freeze the credits and queue the task, in one transaction.

    With ``deadline_seconds`` the video is stopped (FAILED, DEADLINE_EXCEEDED, credits released)
    if it has not finished that long after it was accepted (services/deadlines.py).
    """
    if deadline_seconds is not None:
        check_deadline(deadline_seconds)
        raw = {**raw, "deadlineSeconds": deadline_seconds}  # part of what an idempotency key stands for
    req, route, price = await _priced(raw, idempotency_key, deps=deps)
    hook = await video_webhook_of(dict(raw), deps=deps)
    if idempotency_key is not None:
        replay = await _begin_idempotent(principal, idempotency_key, _request_hash(raw), deps=deps)
        if replay is not None:
            return Generated(replay, replayed=True)

    try:
        for attempt in range(2):
            try:
                video = await _write_generate(req, route, price, principal, hook=hook, idempotency_key=idempotency_key,
                                              deadline_seconds=deadline_seconds, deps=deps)
                break
            except LedgerRaceError:
                # Only beside processes of an older release: their writes do not bump an account's
                # version, so the unlocked freeze can find a package moved. All was rolled back.
                if attempt:
                    raise
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


async def _write_generate(req: GenerateRequest, route: list[str], price: int, principal: Principal, *,
                          hook: VideoWebhook | None, idempotency_key: str | None, deadline_seconds: int | None,
                          deps: Deps) -> Video:
    """The video, its task and its freeze, written and committed: in one statement where it can be."""
    async with deps.db.writing(account=principal.user_id) as uow:
        now = now_ms()
        new = NewVideo(uuid=str(uuidlib.uuid4()), user_id=principal.user_id, prompt=req.prompt, model=req.model,
                       duration=req.duration, resolution=req.resolution, aspect_ratio=req.aspect_ratio,
                       start_image_url=req.start_image_url, credits=price, now_ms=now, route=json.dumps(route),
                       traceparent=tracing.traceparent(),
                       deadline_at_ms=None if deadline_seconds is None else now + deadline_seconds * 1000)
        snapshots = deps.db.snapshots
        if snapshots is not None and hook is None and idempotency_key is None:
            made = await _express(Express(uow, snapshots), new)
            if made is not None:
                return made
        return await _generate_in(uow, new, route=route, hook=hook, idempotency_key=idempotency_key)


async def _express(express: Express, new: NewVideo) -> Video | None:
    """The generate in one statement (PostgreSQL), from the account's remembered state or, if that
    is gone or moved, from one read now; None when it has to go the ordinary way."""
    for fresh in (False, True):
        seen = await express.snapshot(new.user_id, fresh=fresh)
        if seen is None:
            return None
        if not ledger.unlocked_read_usable(seen.packages, new.credits, new.now_ms):
            continue
        moves, allocations = ledger.plan_freeze(seen.packages, new.credits, new.now_ms)
        try:
            video = await express.generate(new, seen=seen, moves=moves, allocations=allocations,
                                           balance_after=sum(p.remaining for p in seen.packages) - new.credits)
        except LedgerRaceError:
            # A package moved while the version did not: a process of an older release (which locks
            # accounts without bumping their version) wrote it. The statement wrote nothing and the
            # remembered state is dropped: once more from a fresh read, else the ordinary way.
            continue
        if video is not None:
            return video
    return None


async def _generate_in(uow: UnitOfWork, new: NewVideo, *, route: list[str], hook: VideoWebhook | None,
                       idempotency_key: str | None) -> Video:
    """The generate in the unit of work's transaction, committed."""
    store = VideosStore(uow)
    video = await store.add_queued(
        uuid=new.uuid, user_id=new.user_id, prompt=new.prompt, model=new.model, duration=new.duration,
        resolution=new.resolution, aspect_ratio=new.aspect_ratio, start_image_url=new.start_image_url,
        credits=new.credits, now_ms=new.now_ms, route=route, traceparent=new.traceparent,
        deadline_at_ms=new.deadline_at_ms)
    if hook is not None:
        await attach_video_webhook(uow, video.id, new.user_id, hook)
    if idempotency_key is not None:
        await store.complete_idempotency(new.user_id, idempotency_key, video.uuid)
    # Last: on PostgreSQL the freeze takes the account lock, held only until COMMIT.
    await ledger.freeze(uow, user_id=new.user_id, video_id=video.id, video_uuid=video.uuid, amount=new.credits,
                        now_ms=new.now_ms)
    await uow.commit()
    return video


async def quote_price(raw: Mapping[str, Any], principal: Principal, *, idempotency_key: str | None = None,
                      deps: Deps) -> int:
    """What ``generate_video`` would charge for this request, checked as it checks it; nothing is frozen."""
    del principal  # authenticated like generate, but a price is the same for everyone
    _, _, price = await _priced(raw, idempotency_key, deps=deps)
    return price


async def _priced(raw: Mapping[str, Any], idempotency_key: str | None, *,
                  deps: Deps) -> tuple[GenerateRequest, list[str], int]:
    """The validated request, its provider route and its price; BadUserInput as generate answers it."""
    # First: every string of the request (hashed whole by generate) and the key must be storable text.
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
    if idempotency_key is not None and (not idempotency_key.strip() or len(idempotency_key) > MAX_IDEMPOTENCY_KEY):
        raise BadUserInput(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters", field="idempotencyKey")
    return req, route, price


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


@dataclass(frozen=True, slots=True)
class Cancellation:
    outcome: CancelOutcome
    video: Video | None  # None when NOT_FOUND


@dataclass(frozen=True, slots=True)
class Stopped:
    """A video stopped in flight: as it is now, and the runner task it had (for the vendor's cancel)."""

    video: Video
    task: Task | None
    was: VideoStatus


async def stop_in(uow: UnitOfWork, video: Video, *, status: VideoStatus, failure: FailureCode, message: str,
                  now: int,
                  render: Callable[[Video], dict[str, Any]] | None = None) -> Stopped:
    """Stop ``video`` in the caller's transaction: its task goes, its status changes (compare-and-set)
    and its hold is released, all or nothing. InvalidTransition if it moved since it was read."""
    if not can_transition(video.status, status):
        raise InvalidTransition(f"{video.status} -> {status} is not allowed")
    store = VideosStore(uow)
    task = await store.take_task(video.id)
    stopped = await store.update_status(video, status=status.value, failure_code=failure.value,
                                        error_message=message)
    await ledger.release(uow, video_id=video.id, video_uuid=video.uuid, now_ms=now)
    await record_video_event(uow, before=video.status, after=stopped, now_ms=now, render=render)
    return Stopped(stopped, task, video.status)


async def after_stop(stopped: Stopped, *, deps: Deps) -> None:
    """Once a stop is committed: tell watchers, withdraw any media, ask the vendor to stop too."""
    if stopped.was is VideoStatus.UPLOADING:
        await unpublish_media(stopped.video.uuid, storage=deps.storage)
    await deps.publisher.video_changed(stopped.video)
    await cancel_at_provider(stopped, deps=deps)


async def cancel_at_provider(stopped: Stopped, *, deps: Deps) -> bool:
    """Ask the vendor to stop the task where its API documents a cancel; best effort, logged."""
    task = stopped.task
    if task is None or task.provider_task_id is None:
        return False
    provider = deps.router.providers.get(task.provider)
    if not isinstance(provider, Cancellable):
        return False  # polling has stopped and any late result is discarded: nothing is charged
    try:
        async with asyncio.timeout(PROVIDER_CANCEL_SECONDS):
            return await provider.cancel(task.provider_task_id, ProviderJob.for_video(stopped.video))
    except (ProviderError, TimeoutError) as exc:
        log.warning("video %s: %s did not take the cancel: %s", stopped.video.uuid, task.provider,
                    getattr(exc, "message", type(exc).__name__))
        return False


async def cancel_video(uuid: str, principal: Principal, *, deps: Deps) -> Cancellation:
    """Stop one of the caller's videos and release its credits; idempotent, never charged.

    Exactly one of the runner's completion and this cancel wins: both are compare-and-set on the
    status in the transaction that settles or releases the hold.
    """
    canonical = _uuid_or_none(uuid)
    if canonical is None:
        return Cancellation(CancelOutcome.NOT_FOUND, None)
    for _ in range(STOP_ATTEMPTS):
        async with deps.db.writing() as uow:
            video = await VideosStore(uow).get_owned(canonical, principal.user_id)
            if video is None:
                return Cancellation(CancelOutcome.NOT_FOUND, None)
            if video.status is VideoStatus.CANCELLED:
                return Cancellation(CancelOutcome.CANCELLED, video)
            if video.status.is_terminal:
                return Cancellation(CancelOutcome.ALREADY_FINISHED, video)
            try:
                stopped = await stop_in(uow, video, status=VideoStatus.CANCELLED, failure=FailureCode.CANCELLED,
                                        message="cancelled by its owner", now=now_ms(),
                                        render=deps.video_json)
            except InvalidTransition:
                continue  # the runner moved it meanwhile (rolled back): read it again
            await uow.commit()
        await after_stop(stopped, deps=deps)
        return Cancellation(CancelOutcome.CANCELLED, stopped.video)
    raise Conflict("the video kept changing while it was being cancelled; try again")


async def queue_positions(uuids: Sequence[str], *, deps: Deps) -> dict[str, int]:
    """Where each of these videos waits (1 = claimed next); absent once started, ended or unknown.

    Callers pass uuids of videos the caller owns (already authorised): a position says how many
    waiting tasks go first, never whose they are.
    """
    return await deps.db.reads.queue_positions(uuids)


async def delete_video(uuid: str, principal: Principal, *, deps: Deps) -> str:
    """Soft-delete: the video and its media disappear; one in flight is cancelled first (never charged).

    The row stays (marked deleted) for the ledger and the history; its files are removed from
    storage here, and a runner that finishes it later removes what it stored (runner._finish).
    """
    canonical = _uuid_or_none(uuid)
    if canonical is None:
        raise NotFound()
    for _ in range(STOP_ATTEMPTS):
        stopped: Stopped | None = None
        async with deps.db.writing() as uow:
            store = VideosStore(uow)
            video = await store.get_owned(canonical, principal.user_id)
            if video is None:
                raise NotFound()
            if not video.status.is_terminal:
                try:
                    stopped = await stop_in(uow, video, status=VideoStatus.CANCELLED,
                                            failure=FailureCode.CANCELLED, message="deleted by its owner",
                                            now=now_ms(), render=deps.video_json)
                except InvalidTransition:
                    continue
                video = stopped.video
            if not await store.soft_delete(video.id, now_ms()):
                raise NotFound()
            await uow.commit()
        break
    else:
        raise Conflict("the video kept changing while it was being deleted; try again")
    await unpublish_media(canonical, storage=deps.storage)
    # Watchers of the video learn at once that it is gone for them.
    await deps.publisher.video_changed(dataclasses.replace(video, deleted=True))
    if stopped is not None:
        await cancel_at_provider(stopped, deps=deps)
    return canonical


async def retry_video(uuid: str, principal: Principal, *, deps: Deps) -> Generated:
    """A new video with a failed or cancelled one's parameters (a new charge); BadUserInput when
    its failure is not one that trying again can cure (content policy, invalid input)."""
    video = await get_video(uuid, principal, deps=deps)
    if video.status not in (VideoStatus.FAILED, VideoStatus.CANCELLED):
        raise BadUserInput("uuid: only a failed or cancelled video can be retried", field="uuid")
    failure = video.failure_code or FailureCode.INTERNAL
    if not failure.retryable:
        raise BadUserInput(f"uuid: the video failed with {failure.value}, which trying again does not cure",
                           field="uuid")
    raw: dict[str, Any] = {"prompt": video.prompt, "model": video.model, "duration": video.duration,
                           "aspectRatio": video.aspect_ratio}
    if video.resolution is not None:
        raw["quality"] = video.resolution
    if video.start_image_url is not None:
        raw["startImageUrl"] = video.start_image_url
    return await generate_video(raw, principal, deps=deps)


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
