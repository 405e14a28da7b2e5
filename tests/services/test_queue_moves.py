"""Queue places pushed as they move, through the real runner and the real fan-out (one process, or
a worker and an API replica sharing Redis): a subscriber of a waiting video hears each move."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.videos_store import videos_by_uuid, waiting_places
from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.runner import Runner, RunnerConfig
from kensa_gql.services import accounts, following
from kensa_gql.services import videos as video_service
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from tests.adapters.test_runner_results import InlinePool, _no_check
from tests.backends import require_redis

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


class GatedVendor:
    """Each job runs until the test lets it end (it then fails: an end as sure as success, cheaper)."""

    name = "vendor"
    poll_interval = 0.02

    def __init__(self) -> None:
        self.released: set[str] = set()

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True

    async def submit(self, job: ProviderJob) -> str:
        return job.video_uuid

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        if task_id in self.released:
            return JobStatus(JobState.FAILED, error="done")
        return JobStatus(JobState.RUNNING, progress=10)


@pytest.fixture(params=["memory", "redis"])
async def hubs(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[tuple[VideoEvents, VideoEvents]]:
    """(the worker's fan-out, the subscribers' fan-out): one and the same, or two replicas on Redis."""
    def hub(url: str) -> VideoEvents:
        return VideoEvents(url, reread=functools.partial(videos_by_uuid, db.reading),
                           places=functools.partial(waiting_places, db.reading))

    if request.param == "memory":
        shared = hub("memory://")
        pair = (shared, shared)
    else:
        url = require_redis()
        pair = (hub(url), hub(url))
    for each in set(pair):
        await each.start()
    yield pair
    for each in set(pair):
        await each.stop()


async def test_a_waiting_video_counts_down_as_the_owners_others_end_then_starts(
        db: Database, tmp_path: Path, hubs: tuple[VideoEvents, VideoEvents]) -> None:
    worker_hub, api_hub = hubs
    vendor = GatedVendor()
    router = Router({"sora-2": ["vendor"]}, {"vendor": vendor})
    worker = Deps(db=db, catalog=Catalog.load(), publisher=worker_hub, check_host=_no_check,
                  storage=None, router=router, watchers=worker_hub.watchers)  # type: ignore[arg-type]
    api = Deps(db=db, catalog=Catalog.load(), publisher=api_hub, check_host=_no_check,
               storage=None, router=router, watchers=api_hub.watchers)  # type: ignore[arg-type]
    owner, _ = await accounts.create_user("capped@example.test", credits=100, db=db)
    # given a user allowed one running video, with three queued
    first, second, third = [(await video_service.generate_video(REQUEST, owner, deps=api)).video
                            for _ in range(3)]
    # and a subscriber of the third
    seen: list[tuple[VideoStatus, int | None]] = []
    heard = asyncio.Event()

    async def subscriber() -> None:
        async for video, place in following.follow(third.uuid, owner, deps=api):
            seen.append((video.status, place))
            heard.set()

    async def next_seen() -> tuple[VideoStatus, int | None]:
        count = len(seen)
        async with asyncio.timeout(8):
            while len(seen) == count:
                heard.clear()
                await heard.wait()
        return seen[count]

    follow = asyncio.create_task(subscriber())
    assert await next_seen() == (VideoStatus.PENDING, 3)
    config = RunnerConfig(lease_seconds=5, claim_interval=0.02, claim_batch=16, max_running=3,
                          task_timeout_seconds=60, max_video_bytes=1 << 20, work_dir=tmp_path, max_per_user=1)
    async with httpx.AsyncClient() as http:
        runner = Runner(worker, storage=None, pool=InlinePool(), http=http, config=config)  # type: ignore[arg-type]
        loop = asyncio.create_task(runner.run())
        try:
            # when the runner starts the first: the third moves up, its own status unchanged
            assert await next_seen() == (VideoStatus.PENDING, 2)
            # when the first ends and the runner starts the second
            vendor.released.add(first.uuid)
            assert await next_seen() == (VideoStatus.PENDING, 1)
            # when the second ends, the third starts: its place is gone
            vendor.released.add(second.uuid)
            status, place = await next_seen()
            assert status is VideoStatus.GENERATING and place is None
            vendor.released.add(third.uuid)
            async with asyncio.timeout(20):
                await follow
        finally:
            follow.cancel()
            # Python 3.11's wait_for can swallow a cancel that lands as the runner's wake-up fires
            # (a driver just ended): cancel until it takes.
            while not loop.done():
                loop.cancel()
                await asyncio.wait({loop}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    # and while it waited, it heard each move once (no repeat of an unmoved place, e.g. when the first ended)
    assert [each for each in seen if each[0] is VideoStatus.PENDING] == [
        (VideoStatus.PENDING, 3), (VideoStatus.PENDING, 2), (VideoStatus.PENDING, 1)]
    assert seen[-1][0] is VideoStatus.FAILED
