"""The durable task runner: claims due tasks with leases and drives each to COMPLETED or FAILED.

Everything a task needs to resume lives in the database (provider, provider task id, route
position, lease). A runner holds a lease on each task it drives and renews it; if the process
dies, the lease runs out and any runner picks the task up again. Every status change and its
ledger effect commit together, guarded by compare-and-set on the status and a lease check, so
settle or release happens exactly once whatever crashes or races.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kensa_gql import metrics, tracing
from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.db.videos_store import Task, VideosStore
from kensa_gql.adapters.downloads import download
from kensa_gql.adapters.thumbnails import ThumbnailError, make_thumbnail
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import (
    ContentRejected,
    InvalidTransition,
    ProviderError,
    ProviderUnavailable,
    StorageUnavailable,
    Unavailable,
)
from kensa_gql.domain.ports import Cancellable, JobState, ProviderJob, ResultFile, Storage, StoredFile
from kensa_gql.domain.videos import (
    FailureCode,
    LedgerEffect,
    Video,
    VideoStatus,
    can_transition,
    ledger_effect,
    media_keys,
    next_progress,
)
from kensa_gql.domain.watching import Watcher, Watchers
from kensa_gql.services import ledger
from kensa_gql.services.deps import Deps
from kensa_gql.services.videos import unpublish_media
from kensa_gql.services.webhook_events import record_video_event

log = logging.getLogger(__name__)

# Adapters already retry transient HTTP failures (3 calls with backoff); one more round here
# covers a Retry-After longer than an adapter waits, then the route fails over.
SUBMIT_ATTEMPTS = 2
BACKOFF_BASE_SECONDS = 1.0




def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class LeaseLost(Exception):
    """Another runner owns this task now, or the video was stopped; stop driving it without writing anything."""


class _StopWatch(Watcher):
    """Hears, through the event fan-out, that a driven video ended without the runner (cancelled,
    past its deadline, deleted), and wakes its driver so polling stops at once. Without events
    (another process, a gap) the driver still stops at its next write: the stop took its task."""

    __slots__ = ("_nudge", "stopped")

    def __init__(self, uuid: str, watchers: Watchers, nudge: asyncio.Event | None) -> None:
        super().__init__(uuid, watchers)
        self._nudge = nudge
        self.stopped = False

    def changed(self, video: Video) -> None:
        if video.status.is_terminal or video.deleted:
            self.stopped = True
            if self._nudge is not None:
                self._nudge.set()


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    lease_seconds: float
    claim_interval: float
    claim_batch: int
    max_running: int
    task_timeout_seconds: float
    max_video_bytes: int
    work_dir: Path
    store_attempts: int = 5           # downloading / storing the result: tries in all
    store_backoff_seconds: float = 1.0  # the first back-off, doubling (1+2+4+8 s for 5 tries)
    max_per_user: int | None = None   # started videos per user, across runners; None: no cap


class Runner:
    def __init__(self, deps: Deps, *, storage: Storage, pool: CpuPool, http: httpx.AsyncClient,
                 config: RunnerConfig, owner: str | None = None) -> None:
        self._deps = deps
        self._storage = storage
        self._pool = pool
        self._http = http
        self._config = config
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._running: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.last_claim_at: float | None = None  # time.monotonic() of the last successful claim round
        self._nudges: dict[int, asyncio.Event] = {}
        self._stops: dict[int, _StopWatch] = {}

    def wake(self) -> None:
        self._wake.set()

    def nudge(self, video_id: int) -> None:
        """Poll this task now instead of at its next interval (a vendor's callback said it changed)."""
        event = self._nudges.get(video_id)
        if event is not None:
            event.set()
        else:
            self.wake()

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Claim and drive tasks until cancelled."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="runner-heartbeat")
        failures = 0
        log.info("runner %s started", self.owner, extra={"owner": self.owner, "max_running": self._config.max_running})
        try:
            while True:
                try:
                    await self.claim_once()
                    failures = 0
                    self.last_claim_at = time.monotonic()
                except Exception as exc:
                    # A database restart or failover must not end the loop: a worker whose runner
                    # died would stay up doing nothing. Back off and try again.
                    failures += 1
                    if isinstance(exc, Unavailable):  # locked, unreachable: no traceback to read, but the cause
                        cause = exc.__cause__ or exc.__context__
                        log.warning("claiming tasks failed (%d in a row): %s%s; retrying", failures, exc.message,
                                    f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
                                    if cause is not None else "", extra={"failures": failures})
                    else:
                        log.exception("claiming tasks failed (%d in a row); retrying", failures)
                    await asyncio.sleep(min(30.0, self._config.claim_interval * 2 ** min(failures, 8)))
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.claim_interval)
        finally:
            heartbeat.cancel()
            held = list(self._running)
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(heartbeat, *self._running.values(), return_exceptions=True)
            await self._release_leases(held)
            log.info("runner %s stopped; %d task(s) handed back", self.owner, len(held),
                     extra={"owner": self.owner, "released_leases": len(held)})

    async def _release_leases(self, video_ids: list[int]) -> None:
        """On a clean shutdown, hand our tasks back at once instead of waiting out the lease."""
        if not video_ids:
            return
        try:
            async with self._deps.db.writing() as uow:
                for vid in video_ids:
                    await VideosStore(uow).release_lease(vid, self.owner)
                await uow.commit()
        except Exception:
            log.warning("could not release leases on shutdown; they will expire", exc_info=True)

    async def claim_once(self) -> int:
        room = self._config.max_running - len(self._running)
        if room <= 0:
            return 0
        async with self._deps.db.writing() as uow:
            store = VideosStore(uow)
            now = now_ms()
            claimed = await store.claim_due(
                self.owner, now_ms=now, lease_ms=int(self._config.lease_seconds * 1000),
                limit=min(room, self._config.claim_batch), max_per_user=self._config.max_per_user)
            await store.mark_started([t.video_id for t in claimed if t.attempts == 1], now)
            await uow.commit()
        claimed_at = now_ms()
        for task in claimed:
            metrics.claimed(task.next_run_at_ms, claimed_at)
            if task.video_id in self._running:
                continue
            driver = asyncio.create_task(self._drive_safely(task), name=f"drive-{task.video_id}")
            self._running[task.video_id] = driver
            driver.add_done_callback(self._forget_driver)
        if claimed:
            await self._deps.publisher.queue_moved()  # one message per batch, for every waiting subscriber
        return len(claimed)

    def _forget_driver(self, driver: asyncio.Task[None]) -> None:
        for vid, running in list(self._running.items()):
            if running is driver:
                del self._running[vid]
        # A slot is free, and its owner may have a video waiting under the per-user cap: claim now.
        self._wake.set()

    async def _heartbeat(self) -> None:
        interval = self._config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            ids = list(self._running)
            if not ids:
                continue
            try:
                async with self._deps.db.writing() as uow:
                    kept = await VideosStore(uow).renew_leases(
                        self.owner, ids, now_ms() + int(self._config.lease_seconds * 1000))
                    await uow.commit()
            except Unavailable as exc:
                log.warning("lease renewal failed: %s; retrying", exc.message)
                continue
            except Exception:
                log.exception("lease renewal failed; retrying")
                continue
            for vid in ids:
                if vid not in kept and vid in self._running:
                    log.warning("lost the lease on video %s; another runner has it", vid)
                    self._running[vid].cancel()

    async def _drive_safely(self, task: Task) -> None:
        self._nudges[task.video_id] = asyncio.Event()
        try:
            with tracing.span("task run", parent=task.traceparent, **{"kensa.video_id": task.video_id,
                                                                        "kensa.vendor": task.provider}):
                await self._drive(task)
        except (LeaseLost, InvalidTransition) as exc:
            log.info("stopped driving video %s: %s", task.video_id, exc)
        except asyncio.CancelledError:
            raise
        except Unavailable as exc:
            log.warning("driving video %s stopped: %s; its lease will expire and it will be retried",
                        task.video_id, exc.message)
        except Exception:
            log.exception("driving video %s failed; its lease will expire and it will be retried",
                          task.video_id)
        finally:
            self._nudges.pop(task.video_id, None)

    # -- one task ---------------------------------------------------------------------------------
    async def _drive(self, task: Task) -> None:
        video = await self._load(task.video_id)
        if video is None:
            return
        log.info("claimed video %s (%s, attempt %d)", video.uuid, video.status.value, task.attempts,
                 extra={"video_uuid": video.uuid, "vendor": task.provider, "status": video.status.value,
                        "attempt": task.attempts, "waited_ms": max(0, now_ms() - task.next_run_at_ms)})
        if video.status.is_terminal:  # finished but its task row survived: just tidy up
            async with self._deps.db.writing() as uow:
                await VideosStore(uow).finish_task(video.id)
                await uow.commit()
            return
        stop = self._stops[video.id] = _StopWatch(video.uuid, self._deps.watchers, self._nudges.get(video.id))
        stop.start()
        try:
            await self._drive_live(task, video)
        finally:
            stop.stop()
            self._stops.pop(video.id, None)

    async def _drive_live(self, task: Task, video: Video) -> None:
        # The timeout counts from the first claim: time spent waiting under the per-user cap is
        # not generation time (videos from before started_at_ms was kept count from creation).
        started_at = await self._started_at(video)
        failures = 0
        while not video.status.is_terminal:
            if now_ms() - started_at > self._config.task_timeout_seconds * 1000:
                await self._fail(video, FailureCode.TIMEOUT, "generation timed out")
                return
            name = task.provider
            provider = self._deps.router.providers.get(name)
            if provider is None:
                await self._fail(video, FailureCode.INTERNAL, f"provider {name} is not configured")
                return
            job = ProviderJob.for_video(video)
            if task.provider_task_id is None:
                task, video = await self._submit(task, video, job)
                continue
            try:
                with metrics.provider_call(name, "poll"):
                    status = await provider.poll(task.provider_task_id, job)
                failures = 0
            except ProviderUnavailable as exc:
                failures += 1
                log.warning("polling %s for video %s failed (%s); will retry", name, video.uuid, exc.message)
                await self._sleep(task, min(provider.poll_interval * (2 ** min(failures, 5)), 300.0))
                continue
            except ProviderError as exc:
                await self._fail(video, exc.failure, exc.message)
                return
            if status.state is JobState.FAILED:
                if status.retryable and task.route_index + 1 < len(task.route):
                    # A passing failure (overload, vendor timeout): the next provider makes it afresh.
                    log.warning("video %s failed at %s (%s); failing over to %s", video.uuid, name,
                                status.error, task.route[task.route_index + 1])
                    await self._write_task(task, route_index=task.route_index + 1, provider_task_id=None)
                    task = await self._reload_task(task)
                    continue
                failure = status.failure or (FailureCode.PROVIDER_UNAVAILABLE if status.retryable
                                             else FailureCode.PROVIDER_ERROR)
                await self._fail(video, failure, status.error or f"{name} reported a failure")
                return
            if status.state is JobState.SUCCEEDED and status.result is not None:
                video = await self._finish(video, status.result)
                return
            progress = status.progress if status.progress is not None else self._estimate(video)
            if video.status is VideoStatus.PENDING or next_progress(video.progress, progress,
                                                                   VideoStatus.GENERATING) != video.progress:
                video = await self._transition(video, VideoStatus.GENERATING, progress=progress)
            await self._sleep(task, provider.poll_interval)

    async def _submit(self, task: Task, video: Video, job: ProviderJob) -> tuple[Task, Video]:
        provider = self._deps.router.providers[task.provider]
        last: ProviderError | None = None
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                started = time.monotonic()
                with metrics.provider_call(task.provider, "submit"):
                    provider_task_id = await provider.submit(job)
                log.info("submitted video %s to %s", video.uuid, task.provider,
                         extra={"video_uuid": video.uuid, "vendor": task.provider,
                                "provider_task_id": provider_task_id,
                                "submit_ms": round((time.monotonic() - started) * 1000, 1)})
                break
            except ProviderUnavailable as exc:
                last = exc
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_BASE_SECONDS * 2 ** attempt
                log.warning("submitting video %s to %s failed (%s)", video.uuid, task.provider, exc.message)
                if attempt + 1 < SUBMIT_ATTEMPTS:
                    await asyncio.sleep(min(delay, 60.0) * (0.5 + secrets.randbelow(1000) / 1000))
            except ProviderError as exc:
                return task, await self._fail(video, exc.failure, exc.message)
        else:
            if task.route_index + 1 < len(task.route):
                nxt = task.route[task.route_index + 1]
                log.warning("failing over video %s from %s to %s", video.uuid, task.provider, nxt)
                await self._write_task(task, route_index=task.route_index + 1)
                return await self._reload_task(task), video
            message = last.message if last else "no provider accepted the task"
            return task, await self._fail(video, FailureCode.PROVIDER_UNAVAILABLE, message)
        try:
            await self._write_task(task, provider_task_id=provider_task_id)
        except LeaseLost:
            # Stopped (or taken over) while it was being submitted: nobody will poll this vendor
            # task, so ask the vendor to drop it where it can.
            if isinstance(provider, Cancellable):
                with contextlib.suppress(ProviderError):
                    await provider.cancel(provider_task_id, job)
            raise
        video = await self._transition(video, VideoStatus.GENERATING, progress=0, provider=task.provider)
        return await self._reload_task(task), video

    async def _finish(self, video: Video, result: ResultFile) -> Video:
        """Publish the result and complete; or fail, releasing the credits, with nothing published.

        The result's files in the work directory are ours from here on: they are removed however
        this ends, except when another runner takes the task over (it may be writing them anew).
        A video stopped meanwhile (cancelled, past its deadline) keeps nothing: the result is
        discarded before it is stored, or withdrawn if the stop came while it was being stored.
        """
        given = [local for local in (result.path, result.thumbnail_path) if local is not None]
        if video.status is not VideoStatus.UPLOADING:  # already UPLOADING when resumed after a crash
            try:
                video = await self._transition(video, VideoStatus.UPLOADING, progress=max(video.progress, 99))
            except (LeaseLost, InvalidTransition):
                if await self._stopped(video):
                    _remove(given)
                raise
        fresh = await self._load(video.id)
        if fresh is not None and fresh.status.is_terminal:  # stopped: the result is never stored
            _remove(given)
            raise LeaseLost(f"video {video.uuid} was stopped ({fresh.status}); its result is discarded")
        if fresh is None or fresh.deleted:
            # Deleted while it was made: it still completes and settles, but nothing is published.
            _remove(given)
            return await self._transition(video, VideoStatus.COMPLETED, completed_at_ms=now_ms())
        work: list[Path] = []
        failure: tuple[FailureCode, str] | None = None
        try:
            started = time.monotonic()
            source, thumb = await self._fetch(video, result, work)
            stored_video, stored_thumb = await self._publish(video, source, thumb)
            log.info("copied the result of video %s to storage (%d bytes)", video.uuid, stored_video.size,
                     extra={"video_uuid": video.uuid, "vendor": video.provider, "bytes": stored_video.size,
                            "copy_ms": round((time.monotonic() - started) * 1000, 1)})
        except ProviderError as exc:
            failure = FailureCode.RESULT_UNAVAILABLE, exc.message
        except StorageUnavailable as exc:
            failure = FailureCode.STORAGE_ERROR, f"could not store the result: {exc.message}"
        except (LeaseLost, asyncio.CancelledError):
            raise
        except BaseException:
            _remove(work)
            raise
        _remove(work)  # before the final status, so a client that sees it finds nothing left over
        if failure is not None:
            return await self._fail(video, *failure)
        done = now_ms()
        # A delete that committed while the files went up found nothing to remove: remove them now.
        # (This read follows the upload, and a delete after it removes them itself, so one of the
        # two always does; done before COMPLETED, while the lease is still renewed.)
        if await self._deleted(video):
            await unpublish_media(video.uuid, storage=self._storage)
            return await self._transition(video, VideoStatus.COMPLETED, completed_at_ms=done)
        try:
            return await self._transition(
                video, VideoStatus.COMPLETED, video_url=stored_video.url, thumbnail_url=stored_thumb.url,
                file_size=stored_video.size, completed_at_ms=done,
                generation_time=max(0, (done - video.created_at_ms) // 1000))
        except (LeaseLost, InvalidTransition):
            # Stopped while the files went up: the stop withdrew what it found, this the rest.
            if await self._stopped(video):
                await unpublish_media(video.uuid, storage=self._storage)
            raise

    async def _stopped(self, video: Video) -> bool:
        """Whether the video ended without us (cancelled, past its deadline): not another runner's now."""
        fresh = await self._load(video.id)
        return fresh is not None and fresh.status in (VideoStatus.CANCELLED, VideoStatus.FAILED)

    async def _deleted(self, video: Video) -> bool:
        fresh = await self._load(video.id)
        return fresh is None or fresh.deleted

    async def _fetch(self, video: Video, result: ResultFile, work: list[Path]) -> tuple[Path, Path]:
        """The result video and its thumbnail as local files (noted in ``work``), downloading and
        cutting them as needed; a download that may succeed later is tried again after a back-off."""
        source = result.path
        if source is None:
            if result.url is None:
                raise ContentRejected("the provider reported success without a result")
            for attempt in range(self._config.store_attempts):
                try:
                    source = await download(self._http, result.url, headers=result.headers,
                                            max_bytes=self._config.max_video_bytes, work_dir=self._config.work_dir)
                    break
                except ProviderUnavailable as exc:
                    log.warning("downloading video %s failed (%s); attempt %d", video.uuid, exc.message, attempt + 1)
                    if attempt + 1 == self._config.store_attempts:
                        raise
                    await self._back_off(attempt)
        assert source is not None
        work.append(source)
        thumb = result.thumbnail_path
        if thumb is None:
            thumb = self._config.work_dir / f"{video.uuid}.jpg"
            try:
                await self._pool.run(make_thumbnail, str(source), str(thumb))
            except ThumbnailError as exc:
                raise ContentRejected(f"the result is not a playable video: {exc}") from exc
            except OSError as exc:
                raise StorageUnavailable(f"the work directory cannot be written: {type(exc).__name__}") from exc
        work.append(thumb)
        return source, thumb

    async def _publish(self, video: Video, source: Path, thumb: Path) -> tuple[StoredFile, StoredFile]:
        """Put both files in storage, trying again after a back-off while it cannot be written.

        A file already stored is not put again; when every try failed, StorageUnavailable goes up
        and whatever did get stored is removed when the video FAILS (``unpublish_media``).
        """
        keys = media_keys(video.uuid)
        files = {keys[0]: (source, "video/mp4"), keys[1]: (thumb, "image/jpeg")}
        stored: dict[str, StoredFile] = {}
        for attempt in range(self._config.store_attempts):
            try:
                for key, (path, content_type) in files.items():
                    if key not in stored:
                        stored[key] = await self._storage.put(key, path, content_type)
                return stored[keys[0]], stored[keys[1]]
            except StorageUnavailable as exc:
                log.warning("storing video %s failed (%s); attempt %d of %d", video.uuid, exc.message,
                            attempt + 1, self._config.store_attempts)
                if attempt + 1 == self._config.store_attempts:
                    raise
                await self._back_off(attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _back_off(self, attempt: int) -> None:
        await asyncio.sleep(min(self._config.store_backoff_seconds * 2 ** attempt, 60.0))

    def _estimate(self, video: Video) -> int:
        # Vendors without a progress field: a time-based estimate against a typical 3 minutes.
        elapsed = (now_ms() - video.created_at_ms) / 1000
        return min(95, int(elapsed / 180 * 100))

    # -- persistence ------------------------------------------------------------------------------
    async def _load(self, video_id: int) -> Video | None:
        async with self._deps.db.reading() as uow:
            return await VideosStore(uow).get_by_id(video_id)

    async def _started_at(self, video: Video) -> int:
        async with self._deps.db.reading() as uow:
            started = await VideosStore(uow).started_at(video.id)
        return video.created_at_ms if started is None else started

    async def _reload_task(self, task: Task) -> Task:
        async with self._deps.db.reading() as uow:
            fresh = await VideosStore(uow).task_for(task.video_id, self.owner)
        if fresh is None:
            raise LeaseLost(f"task {task.video_id} is no longer ours")
        return fresh

    async def _write_task(self, task: Task, **values: Any) -> None:
        async with self._deps.db.writing() as uow:
            if not await VideosStore(uow).update_task(task.video_id, self.owner, **values):
                raise LeaseLost(f"task {task.video_id} is no longer ours")
            await uow.commit()

    async def _sleep(self, task: Task, seconds: float) -> None:
        await self._write_task(task, next_run_at_ms=now_ms() + int(seconds * 1000))
        nudged = self._nudges.get(task.video_id)
        if nudged is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(nudged.wait(), seconds)
        nudged.clear()
        stop = self._stops.get(task.video_id)
        if stop is not None and stop.stopped:
            raise LeaseLost(f"video {task.video_id} was stopped; polling ends")

    async def _fail(self, video: Video, failure: FailureCode, message: str) -> Video:
        return await self._transition(video, VideoStatus.FAILED, error_message=message, failure_code=failure.value)

    async def _transition(self, video: Video, target: VideoStatus, **values: Any) -> Video:
        """Change status (and its ledger effect) in one transaction, then publish."""
        if not can_transition(video.status, target):
            raise InvalidTransition(f"{video.status} -> {target} is not allowed")
        progress = next_progress(video.progress, values.pop("progress", video.progress), target)
        if target is VideoStatus.FAILED and video.status is VideoStatus.UPLOADING:
            # Only while uploading can any of it have been stored; removed before the status
            # commits, so a client that sees FAILED finds no media (if the commit fails, the
            # task is retried and publishes again).
            await unpublish_media(video.uuid, storage=self._storage)
        now = now_ms()
        async with self._deps.db.writing() as uow:
            store = VideosStore(uow)
            if not await store.update_task(video.id, self.owner, next_run_at_ms=now):
                raise LeaseLost(f"task {video.id} is no longer ours")
            updated = await store.update_status(video, status=target.value, progress=progress, **values)
            effect = ledger_effect(target)
            resolved = False
            if effect is LedgerEffect.SETTLE:
                resolved = await ledger.settle(uow, video_id=video.id, video_uuid=video.uuid, now_ms=now)
            elif effect is LedgerEffect.RELEASE:
                resolved = await ledger.release(uow, video_id=video.id, video_uuid=video.uuid, now_ms=now)
            if target.is_terminal:
                await store.finish_task(video.id)
            # Webhook deliveries commit with the change they report (the outbox).
            await record_video_event(uow, before=video.status, after=updated, now_ms=now,
                                     render=self._deps.video_json)
            await uow.commit()
        metrics.task_transition(target.value)
        if resolved:
            (metrics.credits_settled if effect is LedgerEffect.SETTLE else metrics.credits_released)(video.credits_used)
        if target is not video.status:
            ledger_done = {LedgerEffect.SETTLE: "settled", LedgerEffect.RELEASE: "released"}.get(effect)
            log.info("video %s %s -> %s%s", video.uuid, video.status.value, target.value,
                     f" ({ledger_done} {video.credits_used} credits)" if ledger_done else "",
                     extra={"video_uuid": video.uuid, "vendor": updated.provider or video.provider,
                            "from_status": video.status.value, "to_status": target.value,
                            **({"ledger": ledger_done, "credits": video.credits_used} if ledger_done else {}),
                            **({"error": values.get("error_message")} if target is VideoStatus.FAILED else {}),
                            **({"total_ms": now - video.created_at_ms} if target.is_terminal else {})})
        await self._deps.publisher.video_changed(updated)
        return updated
