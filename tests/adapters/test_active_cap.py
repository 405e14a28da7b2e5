"""The cap on running videos per user, through the real runner: the excess waits, others go first."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import tasks, videos
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob
from kensa_gql.runner import Runner, RunnerConfig
from kensa_gql.services import accounts
from kensa_gql.services import videos as video_service
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from tests.adapters.test_runner_results import InlinePool, NoEvents, _no_check

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
CAP = 2


class QuickVendor:
    """Every job runs for a few polls, then fails (which ends the video as surely as success, cheaper)."""

    name = "vendor"
    poll_interval = 0.02

    def __init__(self) -> None:
        self.polls: dict[str, int] = {}

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True

    async def submit(self, job: ProviderJob) -> str:
        return job.video_uuid

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        self.polls[task_id] = self.polls.get(task_id, 0) + 1
        if self.polls[task_id] < 3:
            return JobStatus(JobState.RUNNING, progress=10)
        return JobStatus(JobState.FAILED, error="done")


async def started_per_user(db: Database) -> dict[int, int]:
    """Each user's tasks a runner has claimed and not finished, read from the database."""
    async with db.reading() as uow:
        rows = await uow.conn.execute(
            select(videos.c.user_id, func.count()).select_from(tasks.join(videos, videos.c.id == tasks.c.video_id))
            .where(tasks.c.attempts > 0).group_by(videos.c.user_id))
        return {int(user): int(n) for user, n in rows}


async def test_a_users_excess_videos_wait_and_another_users_first_starts_at_once(
        db: Database, tmp_path: Path) -> None:
    deps = Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check, storage=None,  # type: ignore[arg-type]
                router=Router({"sora-2": ["vendor"]}, {"vendor": QuickVendor()}))
    heavy, _ = await accounts.create_user("heavy@example.test", credits=100, db=db)
    light, _ = await accounts.create_user("light@example.test", credits=100, db=db)
    # given ten videos from one user, then one from another
    for _ in range(10):
        await video_service.generate_video(REQUEST, heavy, deps=deps)
    await video_service.generate_video(REQUEST, light, deps=deps)
    config = RunnerConfig(lease_seconds=5, claim_interval=0.02, claim_batch=16, max_running=3,
                          task_timeout_seconds=60, max_video_bytes=1 << 20, work_dir=tmp_path,
                          max_per_user=CAP)
    async with httpx.AsyncClient() as http:
        runner = Runner(deps, storage=None, pool=InlinePool(), http=http, config=config)  # type: ignore[arg-type]
        # when the runner, with three slots, claims once
        assert await runner.claim_once() == 3
        # then the other user's video is among them (it started within one claim interval)
        assert (await started_per_user(db)) == {heavy.user_id: CAP, light.user_id: 1}
        # and while the runner works through the queue, the heavy user never has more than the cap running
        loop = asyncio.create_task(runner.run())
        peak = 0
        try:
            while True:
                started = await started_per_user(db)
                peak = max(peak, started.get(heavy.user_id, 0))
                assert started.get(heavy.user_id, 0) <= CAP, started
                async with db.reading() as uow:
                    rows = (await uow.conn.execute(
                        select(videos.c.status).where(videos.c.user_id == heavy.user_id))).scalars().all()
                assert sum(s in ("GENERATING", "UPLOADING") for s in rows) <= CAP
                if all(s == "FAILED" for s in rows):
                    break
                await asyncio.sleep(0.005)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    assert peak == CAP


async def test_time_waiting_in_the_queue_does_not_count_against_the_task_timeout(
        db: Database, tmp_path: Path) -> None:
    deps = Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check, storage=None,  # type: ignore[arg-type]
                router=Router({"sora-2": ["vendor"]}, {"vendor": QuickVendor()}))
    user, _ = await accounts.create_user("patient@example.test", credits=10, db=db)
    # given a video that waited (under its owner's cap) longer than the task timeout
    video = (await video_service.generate_video(REQUEST, user, deps=deps)).video
    async with db.writing() as uow:
        await uow.conn.execute(update(videos).where(videos.c.id == video.id).values(
            created_at_ms=video.created_at_ms - 120_000))
        await uow.commit()
    config = RunnerConfig(lease_seconds=5, claim_interval=0.02, claim_batch=16, max_running=3,
                          task_timeout_seconds=60, max_video_bytes=1 << 20, work_dir=tmp_path, max_per_user=CAP)
    async with httpx.AsyncClient() as http:
        runner = Runner(deps, storage=None, pool=InlinePool(), http=http, config=config)  # type: ignore[arg-type]
        # when a runner finally takes it
        loop = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(20):
                while True:
                    done = await video_service.get_video(video.uuid, user, deps=deps)
                    if done.status.is_terminal:
                        break
                    await asyncio.sleep(0.02)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    # then it is made (the vendor's own outcome), not failed as timed out on the spot
    assert done.error_message == "done"
