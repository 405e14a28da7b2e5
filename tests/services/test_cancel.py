"""Cancel, delete-cancels, deadlines and retry at the service layer, on SQLite and PostgreSQL.

Every test ends with the ledger audited (tests/audit.py): each hold frozen once and settled or
released at most once, the running balance chained, nothing frozen that should not be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.adapters.db.tables import tasks, videos
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.errors import BadUserInput, InvalidTransition, NotFound
from kensa_gql.domain.ledger import HoldStatus
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob
from kensa_gql.domain.videos import CancelOutcome, FailureCode, Video, VideoStatus
from kensa_gql.runner import LeaseLost, Runner, RunnerConfig
from kensa_gql.services import accounts
from kensa_gql.services.deadlines import expire_deadlines
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from kensa_gql.services.videos import cancel_video, delete_video, generate_video, get_video, retry_video
from tests.audit import audit_ledger
from tests.support import MemoryStorage

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
OWNER = "runner-under-test"
S = VideoStatus


class Vendor:
    """A provider with a documented cancel: records what it was asked to cancel."""

    name = "vendor"
    poll_interval = 0.05

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True

    async def submit(self, job: ProviderJob) -> str:
        return f"task-{job.video_uuid}"

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        return JobStatus(JobState.RUNNING)

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        self.cancelled.append(task_id)
        return True


class Events:
    def __init__(self) -> None:
        self.published: list[Video] = []

    async def video_changed(self, video: Video) -> None:
        self.published.append(video)

    async def queue_moved(self) -> None:
        return None


async def _no_check(_host: str) -> None:
    return None


def make_deps(db: Database) -> tuple[Deps, Vendor, Events]:
    vendor, events = Vendor(), Events()
    deps = Deps(db=db, catalog=Catalog.load(), publisher=events, check_host=_no_check, storage=MemoryStorage(),
                router=Router({"sora-2": ["vendor"]}, {"vendor": vendor}))  # type: ignore[dict-item]
    return deps, vendor, events


async def put_in(db: Database, video: Video, status: VideoStatus) -> Video:
    """Move a new video to ``status`` as a runner holding its task would have (test set-up)."""
    async with db.writing() as uow:
        await uow.conn.execute(update(tasks).where(tasks.c.video_id == video.id).values(
            lease_owner=OWNER, lease_until_ms=2**50, provider_task_id=None if status is S.PENDING
            else f"task-{video.uuid}"))
        await uow.conn.execute(update(videos).where(videos.c.id == video.id).values(
            status=status.value, provider=None if status is S.PENDING else "vendor"))
        await uow.commit()
    return dataclasses.replace(video, status=status)


async def test_cancel_in_each_status_releases_once_is_idempotent_and_refuses_what_it_must(db: Database) -> None:
    deps, vendor, events = make_deps(db)
    me, _ = await accounts.create_user("me@example.test", credits=100, db=db)
    them, _ = await accounts.create_user("them@example.test", credits=10, db=db)
    runner = Runner(deps, storage=deps.storage, pool=None, http=None, config=CONFIG,  # type: ignore[arg-type]
                    owner=OWNER)
    for status in (S.PENDING, S.GENERATING, S.UPLOADING):
        video = await put_in(db, (await generate_video(REQUEST, me, deps=deps)).video, status)
        # when its owner cancels it
        result = await cancel_video(video.uuid, me, deps=deps)
        # then it is CANCELLED, its hold released in the same transaction, its task gone
        assert result.outcome is CancelOutcome.CANCELLED and result.video is not None
        assert (result.video.status, result.video.failure_code) == (S.CANCELLED, FailureCode.CANCELLED)
        audit = await audit_ledger(db, me.user_id)
        assert (audit.available, audit.frozen, audit.used, audit.tasks_left) == (100, 0, 0, 0)
        # subscribers hear the final state; the vendor is asked to stop where a task exists there
        assert events.published[-1].status is S.CANCELLED and events.published[-1].uuid == video.uuid
        assert vendor.cancelled[-1:] == ([] if status is S.PENDING else [f"task-{video.uuid}"])
        vendor.cancelled.clear()
        # and a second cancel answers CANCELLED again and changes nothing
        again = await cancel_video(video.uuid, me, deps=deps)
        assert again.outcome is CancelOutcome.CANCELLED and again.video == result.video
        assert await audit_ledger(db, me.user_id) == audit
    assert (await audit_ledger(db, me.user_id)).holds == {HoldStatus.VOIDED: 3}

    # a finished video is left as it is
    for final in (S.COMPLETED, S.FAILED):
        video = await put_in(db, (await generate_video(REQUEST, me, deps=deps)).video, S.UPLOADING)
        await runner._transition(video, final, error_message=None if final is S.COMPLETED else "x")
        before = await audit_ledger(db, me.user_id)
        result = await cancel_video(video.uuid, me, deps=deps)
        assert result.outcome is CancelOutcome.ALREADY_FINISHED and result.video is not None
        assert result.video.status is final
        assert await audit_ledger(db, me.user_id) == before

    # another user's video, an unknown and a malformed uuid: NOT_FOUND, and theirs is untouched
    theirs = (await generate_video(REQUEST, them, deps=deps)).video
    for uuid in (theirs.uuid, str(uuidlib.uuid4()), "not-a-uuid"):
        result = await cancel_video(uuid, me, deps=deps)
        assert (result.outcome, result.video) == (CancelOutcome.NOT_FOUND, None)
    assert (await get_video(theirs.uuid, them, deps=deps)).status is S.PENDING
    assert (await audit_ledger(db, them.user_id)).holds == {HoldStatus.PENDING: 1}

    # deleting a running video cancels it first: released, never charged, then gone
    video = await put_in(db, (await generate_video(REQUEST, me, deps=deps)).video, S.GENERATING)
    await delete_video(video.uuid, me, deps=deps)
    async with db.reading() as uow:
        stored = await VideosStore(uow).get_by_id(video.id)
    assert stored is not None and stored.deleted and stored.status is S.CANCELLED
    assert vendor.cancelled == [f"task-{video.uuid}"]
    with pytest.raises(NotFound):
        await get_video(video.uuid, me, deps=deps)
    audit = await audit_ledger(db, me.user_id)
    assert audit.holds == {HoldStatus.VOIDED: 5, HoldStatus.POSTED: 1} and audit.tasks_left == 0


async def test_a_deadline_expires_with_no_runner_at_all(db: Database) -> None:
    deps, _, events = make_deps(db)
    me, _ = await accounts.create_user("me@example.test", credits=10, db=db)
    waiting = (await generate_video(REQUEST, me, deadline_seconds=5, deps=deps)).video
    running = await put_in(db, (await generate_video(REQUEST, me, deadline_seconds=60, deps=deps)).video,
                           S.GENERATING)
    open_ended = (await generate_video(REQUEST, me, deps=deps)).video
    # nothing is due before its deadline
    assert await expire_deadlines(deps=deps, now=waiting.created_at_ms + 4_999) == 0
    # when the sweep runs past both deadlines (no runner claimed anything)
    assert await expire_deadlines(deps=deps, now=running.created_at_ms + 60_000) == 2
    # then both ended FAILED with DEADLINE_EXCEEDED and their credits came back; the third is untouched
    for video in (waiting, running):
        stopped = await get_video(video.uuid, me, deps=deps)
        assert (stopped.status, stopped.failure_code) == (S.FAILED, FailureCode.DEADLINE_EXCEEDED)
    assert (await get_video(open_ended.uuid, me, deps=deps)).status is S.PENDING
    audit = await audit_ledger(db, me.user_id)
    assert audit.holds == {HoldStatus.VOIDED: 2, HoldStatus.PENDING: 1} and audit.tasks_left == 1
    assert {v.uuid for v in events.published if v.status is S.FAILED} == {waiting.uuid, running.uuid}
    assert await expire_deadlines(deps=deps, now=running.created_at_ms + 120_000) == 0  # once only
    # a deadline must be 5 seconds to a day
    for seconds in (0, 4, 86_401, -1, True):
        with pytest.raises(BadUserInput) as caught:
            await generate_video(REQUEST, me, deadline_seconds=seconds, deps=deps)
        assert caught.value.field == "deadlineSeconds"
    assert await audit_ledger(db, me.user_id) == audit


async def test_retry_makes_a_new_video_with_a_new_charge_unless_the_failure_is_final(db: Database) -> None:
    deps, _, _ = make_deps(db)
    me, _ = await accounts.create_user("me@example.test", credits=10, db=db)
    first = (await generate_video({**REQUEST, "quality": "720p"}, me, deps=deps)).video
    await cancel_video(first.uuid, me, deps=deps)
    retried = (await retry_video(first.uuid, me, deps=deps)).video
    assert retried.uuid != first.uuid and retried.status is S.PENDING
    assert [(v.prompt, v.model, v.duration, v.resolution, v.aspect_ratio) for v in (first, retried)] == \
        [(first.prompt, first.model, first.duration, first.resolution, first.aspect_ratio)] * 2
    audit = await audit_ledger(db, me.user_id)
    assert audit.holds == {HoldStatus.VOIDED: 1, HoldStatus.PENDING: 1}
    # a video refused for its content cannot be retried; nor can one still running
    async with db.writing() as uow:
        await uow.conn.execute(update(videos).where(videos.c.uuid == first.uuid).values(
            status="FAILED", failure_code=FailureCode.CONTENT_POLICY.value))
        await uow.commit()
    audit = await audit_ledger(db, me.user_id)
    for uuid in (first.uuid, retried.uuid):
        with pytest.raises(BadUserInput):
            await retry_video(uuid, me, deps=deps)
    assert await audit_ledger(db, me.user_id) == audit


# -- cancel racing completion ---------------------------------------------------------------------

CONFIG = RunnerConfig(lease_seconds=30, claim_interval=0.05, claim_batch=4, max_running=4,
                      task_timeout_seconds=600, max_video_bytes=1 << 20, work_dir=Path("/nonexistent"))


async def _race(url: str, start: VideoStatus, target: VideoStatus, stop_first: int, runner_first: int,
                stopper: str) -> None:
    db = Database(create_engine(url))
    try:
        deps, _, _ = make_deps(db)
        me, _ = await accounts.create_user(f"{uuidlib.uuid4().hex}@race.test", credits=10, db=db)
        video = await put_in(db, (await generate_video(REQUEST, me, deadline_seconds=5, deps=deps)).video, start)
        runner = Runner(deps, storage=deps.storage, pool=None, http=None, config=CONFIG,  # type: ignore[arg-type]
                        owner=OWNER)
        past_deadline = video.created_at_ms + 6_000

        async def complete() -> Video | None:
            for _ in range(runner_first):
                await asyncio.sleep(0)
            try:
                return await runner._transition(video, target, error_message="vendor failed")
            except (LeaseLost, InvalidTransition):
                return None

        async def stop() -> Any:
            for _ in range(stop_first):
                await asyncio.sleep(0)
            if stopper == "delete":
                return await delete_video(video.uuid, me, deps=deps)
            if stopper == "deadline":
                return await expire_deadlines(deps=deps, now=past_deadline)
            return await cancel_video(video.uuid, me, deps=deps)

        finished, stopped = await asyncio.gather(complete(), stop())
        if stopper == "deadline" and not stopped:
            await expire_deadlines(deps=deps, now=past_deadline)  # the next sweep
        async with db.reading() as uow:
            final = await VideosStore(uow).get_by_id(video.id)
        assert final is not None
        audit = await audit_ledger(db, me.user_id)  # exactly one of settle and release, chained
        assert audit.tasks_left == 0
        if final.failure_code in (FailureCode.CANCELLED, FailureCode.DEADLINE_EXCEEDED):
            assert final.status is (S.FAILED if stopper == "deadline" else S.CANCELLED)
            # a runner's step to UPLOADING may land first: the stop, retried, still wins after it
            assert finished is None or not target.is_terminal, "a finishing runner must have lost"
            assert audit.holds == {HoldStatus.VOIDED: 1} and audit.available == 10
        else:  # the runner finished it first; the stop found it finished
            assert target.is_terminal, "a stop never gives up on a video still in flight"
            assert finished is not None and final.status is target
            assert stopper != "cancel" or stopped.outcome is CancelOutcome.ALREADY_FINISHED
            expected = HoldStatus.POSTED if target is S.COMPLETED else HoldStatus.VOIDED
            assert audit.holds == {expected: 1}
    finally:
        await db.dispose()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


# Few examples, on both databases: each is a real race between two transactions.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(step=st.sampled_from([(S.UPLOADING, S.COMPLETED), (S.GENERATING, S.FAILED), (S.PENDING, S.FAILED),
                             (S.GENERATING, S.UPLOADING)]),
       stop_first=st.integers(0, 6), runner_first=st.integers(0, 60),  # the sweep reads first: it needs more
       stopper=st.sampled_from(["cancel", "delete", "deadline"]))
def test_a_stop_racing_completion_settles_or_releases_exactly_once(
        migrated_url: str, step: tuple[VideoStatus, VideoStatus], stop_first: int, runner_first: int,
        stopper: str) -> None:
    # cancel, delete of a running video, or the deadline sweep, against the runner finishing it
    asyncio.run(_race(migrated_url, step[0], step[1], stop_first, runner_first, stopper))
