"""The runner and a cancel, against each vendor's emulator: the vendor's own cancel call where it
documents one, and in every case polling stops and a late result is discarded, never stored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.ledger import HoldStatus
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob
from kensa_gql.domain.videos import CancelOutcome, VideoStatus
from kensa_gql.runner import Runner, RunnerConfig
from kensa_gql.services import accounts
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from kensa_gql.services.videos import cancel_video, generate_video, get_video
from tests.adapters.providers.conftest import FetchedImages, make_provider
from tests.adapters.test_runner_results import InlinePool, NoEvents, running
from tests.api.graphql.wire import eventually
from tests.audit import audit_ledger
from tests.emulators.common import Emulator

REQUESTS = {
    "openai": {"prompt": "a paper boat", "model": "sora-2", "duration": 8, "aspectRatio": "16:9"},
    "evolink": {"prompt": "a paper boat", "model": "sora-2", "duration": 8, "aspectRatio": "16:9"},
    "gemini": {"prompt": "a lighthouse", "model": "veo-3-1", "duration": 8, "aspectRatio": "16:9"},
    "dashscope": {"prompt": "cherry blossoms", "model": "wan-2-6", "duration": 5, "aspectRatio": "16:9"},
    "ark": {"prompt": "a kite", "model": "seedance-1-5", "duration": 5, "aspectRatio": "16:9"},
}
CANCEL_CALLS = {"dashscope": ("POST", "/cancel"), "ark": ("DELETE", ""), "gemini": ("POST", ":cancel")}


async def _no_check(_host: str) -> None:
    return None


# SQLite only: the race between cancel and completion is driven on both databases in
# tests/services/test_cancel.py; here the subject is what the runner and the vendor see.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("vendor", sorted(REQUESTS))
async def test_cancel_stops_polling_discards_the_result_and_calls_the_vendor_where_it_can(
        db: Database, tmp_path: Path, emulator_for: Callable[[str], Emulator], vendor: str) -> None:
    emulator = emulator_for(vendor)
    emulator.script.generation_seconds = 600  # queued for two minutes, unless cancelled
    events = VideoEvents("memory://")
    await events.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app())) as http:
        provider = make_provider(vendor, http, work_dir=tmp_path / "work", fetch=FetchedImages())
        storage = LocalStorage(tmp_path / "media", base_url="http://gw.test/media")
        model = REQUESTS[vendor]["model"]
        deps = Deps(db=db, catalog=Catalog.load(), publisher=events, check_host=_no_check, storage=storage,
                    router=Router({str(model): [vendor]}, {vendor: provider}), watchers=events.watchers)
        config = RunnerConfig(lease_seconds=10, claim_interval=0.05, claim_batch=4, max_running=4,
                              task_timeout_seconds=600, max_video_bytes=1 << 24, work_dir=tmp_path / "work")
        runner = Runner(deps, storage=storage, pool=InlinePool(), http=http, config=config)  # type: ignore[arg-type]
        me, _ = await accounts.create_user("me@example.test", credits=100, db=db)
        try:
            async with running(runner):
                uuid = (await generate_video(REQUESTS[vendor], me, deps=deps)).video.uuid
                # given a video submitted to the vendor and being polled
                await eventually(lambda: len(emulator.tasks) == 1 and runner.running == 1, "the vendor task")
                task_id = next(iter(emulator.tasks))
                for _ in range(200):
                    if (await get_video(uuid, me, deps=deps)).status is VideoStatus.GENERATING:
                        break
                    await asyncio.sleep(0.02)
                # when its owner cancels it
                result = await cancel_video(uuid, me, deps=deps)
                assert result.outcome is CancelOutcome.CANCELLED
                # then the runner stops driving it at once (it heard the cancel through the events)
                await eventually(lambda: runner.running == 0, "the runner to stop polling")
                polls = len([s for s in emulator.seen if s.method == "GET"])
                # and a result that becomes ready now is never fetched, let alone stored
                emulator.tasks[task_id].created -= 1_000
                await asyncio.sleep(3 * provider.poll_interval)  # three poll intervals: none may come
                assert len([s for s in emulator.seen if s.method == "GET"]) == polls
        finally:
            await events.stop()
    cancels = [s for s in emulator.seen if s.method in ("POST", "DELETE") and task_id.split("/")[-1] in s.path]
    if vendor in CANCEL_CALLS:
        method, suffix = CANCEL_CALLS[vendor]
        assert [(s.method, s.path.endswith(task_id + suffix)) for s in cancels] == [(method, True)]
    else:
        assert cancels == []  # no documented cancel: nothing sent, the task is just abandoned
    assert not list((tmp_path / "media").rglob(f"{uuid}*"))
    assert (await get_video(uuid, me, deps=deps)).status is VideoStatus.CANCELLED
    audit = await audit_ledger(db, me.user_id)
    assert (audit.available, audit.frozen, audit.used, audit.tasks_left) == (100, 0, 0, 0)
    assert audit.holds == {HoldStatus.VOIDED: 1}


class CancelledWhileSubmitting:
    """A vendor with a cancel call; while it takes the task, the owner cancels the video."""

    name = "vendor"
    poll_interval = 0.05

    def __init__(self) -> None:
        self.during_submit: Callable[[], Awaitable[object]] | None = None
        self.cancelled: list[str] = []
        self.polled = 0

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True

    async def submit(self, job: ProviderJob) -> str:
        assert self.during_submit is not None
        await self.during_submit()
        return f"task-{job.video_uuid}"

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        self.polled += 1
        return JobStatus(JobState.RUNNING)

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        self.cancelled.append(task_id)
        return True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_task_cancelled_while_it_is_submitted_is_dropped_at_the_vendor(db: Database, tmp_path: Path) -> None:
    vendor = CancelledWhileSubmitting()
    deps = Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check,
                storage=LocalStorage(tmp_path / "media", base_url="http://gw.test/media"),
                router=Router({"sora-2": ["vendor"]}, {"vendor": vendor}))  # type: ignore[dict-item]
    config = RunnerConfig(lease_seconds=10, claim_interval=0.05, claim_batch=4, max_running=4,
                          task_timeout_seconds=600, max_video_bytes=1 << 24, work_dir=tmp_path / "work")
    runner = Runner(deps, storage=deps.storage, pool=InlinePool(), http=None, config=config)  # type: ignore[arg-type]
    me, _ = await accounts.create_user("me@example.test", credits=100, db=db)
    uuid = (await generate_video(REQUESTS["openai"], me, deps=deps)).video.uuid
    vendor.during_submit = lambda: cancel_video(uuid, me, deps=deps)
    async with running(runner):
        await eventually(lambda: bool(vendor.cancelled) and runner.running == 0, "the vendor task dropped")
    # the vendor task nobody will poll was cancelled there; ours is CANCELLED and never charged
    assert vendor.cancelled == [f"task-{uuid}"] and vendor.polled == 0
    assert (await get_video(uuid, me, deps=deps)).status is VideoStatus.CANCELLED
    audit = await audit_ledger(db, me.user_id)
    assert (audit.available, audit.frozen, audit.used, audit.tasks_left) == (100, 0, 0, 0)
