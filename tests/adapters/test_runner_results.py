"""The runner taking a vendor's result URL: download, store, and what happens when either fails."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.adapters.providers.render import render_video
from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob, ResultFile, StoredFile
from kensa_gql.domain.videos import Video
from kensa_gql.runner import Runner, RunnerConfig
from kensa_gql.services import accounts, videos
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from tests.adapters.origin import Origin, Reply, serving

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


class UrlVendor:
    """A provider whose every job succeeds at once with a result URL (and the vendor's key header)."""

    name = "vendor"
    poll_interval = 0.05

    def __init__(self, result_url: str) -> None:
        self.result_url = result_url

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True

    async def submit(self, job: ProviderJob) -> str:
        return f"task-{job.video_uuid}"

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        return JobStatus(JobState.SUCCEEDED, progress=100,
                         result=ResultFile(url=self.result_url, headers={"Authorization": "Bearer k"}))


class FlakyStorage(LocalStorage):
    """The local store, failing the first ``failures`` video uploads the way an S3 outage would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root, base_url="http://gw.test/media")
        self.failures = failures

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        if key.startswith("videos/") and self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("storing failed: EndpointConnectionError")
        return await super().put(key, source, content_type)


class InlinePool:
    """The CPU pool's interface without spawning processes (thumbnails of a tiny video are quick)."""

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


class NoEvents:
    async def video_changed(self, video: Video) -> None:
        return None

    async def queue_moved(self) -> None:
        return None


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("render") / "clip.mp4"
    render_video(str(path), "test", 1, "720p", "16:9", fps=4)
    return path.read_bytes()


async def run_one(db: Database, tmp_path: Path, origin: Origin, storage: LocalStorage,
                  credits: int = 10, store_attempts: int = 5) -> tuple[Video, Principal, Path]:
    deps = Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check, storage=storage,
                router=Router({"sora-2": ["vendor"]}, {"vendor": UrlVendor(f"{origin.url}/result.mp4")}))
    principal, _ = await accounts.create_user("owner@example.test", credits=credits, db=db)
    created = await videos.generate_video(REQUEST, principal, deps=deps)
    work_dir = tmp_path / "work"
    config = RunnerConfig(lease_seconds=5, claim_interval=0.05, claim_batch=4, max_running=4,
                          task_timeout_seconds=60, max_video_bytes=1 << 24, work_dir=work_dir,
                          store_attempts=store_attempts, store_backoff_seconds=0.05)
    async with httpx.AsyncClient(timeout=10) as http:
        runner = Runner(deps, storage=storage, pool=InlinePool(), http=http, config=config)  # type: ignore[arg-type]
        async with running(runner):
            video = await wait_terminal(deps, created.video.uuid, principal)
    return video, principal, work_dir


@contextlib.asynccontextmanager
async def running(runner: Runner) -> AsyncIterator[None]:
    task = asyncio.create_task(runner.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_terminal(deps: Deps, uuid: str, principal: Principal) -> Video:
    deadline = time.monotonic() + 30
    while True:
        video = await videos.get_video(uuid, principal, deps=deps)
        if video.status.is_terminal:
            return video
        assert time.monotonic() < deadline, f"video stuck in {video.status}"
        await asyncio.sleep(0.05)


async def _no_check(host: str) -> None:
    return None


async def test_a_result_url_is_downloaded_stored_and_completed(db: Database, tmp_path: Path,
                                                               mp4: bytes) -> None:
    storage = LocalStorage(tmp_path / "media", base_url="http://gw.test/media")
    async with serving({"/result.mp4": Reply(200, [("Content-Type", "video/mp4")], mp4)}) as vendor:
        video, _, work_dir = await run_one(db, tmp_path, vendor, storage)
    assert video.status.value == "COMPLETED", video.error_message
    assert video.file_size == len(mp4)
    assert (tmp_path / "media" / "videos" / f"{video.uuid}.mp4").read_bytes() == mp4
    assert vendor.requests[0].headers["authorization"] == "Bearer k"
    assert list(work_dir.glob("*.download")) == []


async def test_a_failed_store_is_tried_again_without_downloading_again(db: Database, tmp_path: Path,
                                                                       mp4: bytes) -> None:
    # given storage that fails once (the runner retries after a back-off)
    storage = FlakyStorage(tmp_path / "media", failures=1)
    async with serving({"/result.mp4": Reply(200, [("Content-Type", "video/mp4")], mp4)}) as vendor:
        video, _, work_dir = await run_one(db, tmp_path, vendor, storage)
    # then the second attempt stores the same download and completes, and nothing is left behind
    assert video.status.value == "COMPLETED", video.error_message
    assert len(vendor.requests) == 1
    assert list(work_dir.iterdir()) == []


async def test_storage_failing_every_try_fails_the_video_and_releases_the_credits(db: Database, tmp_path: Path,
                                                                                  mp4: bytes) -> None:
    # given storage that fails more often than the runner tries
    storage = FlakyStorage(tmp_path / "media", failures=100)
    async with serving({"/result.mp4": Reply(200, [("Content-Type", "video/mp4")], mp4)}) as vendor:
        video, principal, work_dir = await run_one(db, tmp_path, vendor, storage, store_attempts=3)
    # then after three tries it FAILS saying why, with its credits back and nothing published
    assert video.status.value == "FAILED"
    assert video.error_message == "could not store the result: storing failed: EndpointConnectionError"
    assert storage.failures == 100 - 3
    balance = await accounts.get_balance(principal, db=db)
    assert (balance.available, balance.frozen, balance.used) == (10, 0, 0)
    assert list((tmp_path / "media").rglob("*.*")) == []
    assert list(work_dir.iterdir()) == []


async def test_an_expired_result_link_fails_the_video_and_releases_the_credits(db: Database,
                                                                               tmp_path: Path) -> None:
    expired = Reply(403, [("Content-Type", "application/xml")], b"<Error><Code>AccessDenied</Code></Error>")
    async with serving({"/result.mp4": expired}) as vendor:
        video, principal, work_dir = await run_one(db, tmp_path, vendor,
                                                   LocalStorage(tmp_path / "media", base_url="http://gw.test/media"))
    assert video.status.value == "FAILED"
    assert "HTTP 403" in (video.error_message or "")
    assert len(vendor.requests) == 1  # final: not retried
    balance = await accounts.get_balance(principal, db=db)
    assert (balance.available, balance.frozen, balance.used) == (10, 0, 0)
    assert list(work_dir.glob("*.download")) == []


class DeletedDuringUpload(LocalStorage):
    """The local store; just as the files go up, the owner deletes the video (a DELETE elsewhere)."""

    owner_deletes: Callable[[], Awaitable[None]] | None = None

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        if self.owner_deletes is not None:
            delete, self.owner_deletes = self.owner_deletes, None
            await delete()  # commits, and removes the media it finds: none yet
        return await super().put(key, source, content_type)


async def test_media_stored_after_a_concurrent_delete_is_removed_again_and_never_charged(
        db: Database, tmp_path: Path, mp4: bytes) -> None:
    media = tmp_path / "media"
    storage = DeletedDuringUpload(media, base_url="http://gw.test/media")
    async with serving({"/result.mp4": Reply(200, [("Content-Type", "video/mp4")], mp4)}) as origin:
        deps = Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check, storage=storage,
                    router=Router({"sora-2": ["vendor"]}, {"vendor": UrlVendor(f"{origin.url}/result.mp4")}))
        principal, _ = await accounts.create_user("owner@example.test", credits=10, db=db)
        uuid = (await videos.generate_video(REQUEST, principal, deps=deps)).video.uuid

        async def delete() -> None:
            await videos.delete_video(uuid, principal, deps=deps)

        storage.owner_deletes = delete
        config = RunnerConfig(lease_seconds=5, claim_interval=0.05, claim_batch=4, max_running=4,
                              task_timeout_seconds=60, max_video_bytes=1 << 24, work_dir=tmp_path / "work")
        async with httpx.AsyncClient(timeout=10) as http:
            runner = Runner(deps, storage=storage, pool=InlinePool(), http=http,  # type: ignore[arg-type]
                            config=config)
            async with running(runner):
                deadline = time.monotonic() + 30
                while True:
                    async with db.reading() as uow:
                        video = await VideosStore(uow).get_by_uuid(uuid)
                    left = sorted(p.name for p in media.rglob("*") if p.is_file())
                    assert video is not None and time.monotonic() < deadline, left
                    # (the runner removes the files before it commits COMPLETED; the loop only waits)
                    if video.status.is_terminal and not left:
                        break
                    await asyncio.sleep(0.05)
    # then the delete cancelled the video while it was UPLOADING (released, never charged), and what
    # the runner stored after the delete is gone again
    assert video.deleted and video.status.value == "CANCELLED"
    assert storage.owner_deletes is None  # the delete did happen during the upload
    balance = await accounts.get_balance(principal, db=db)
    assert (balance.available, balance.frozen, balance.used) == (10, 0, 0)
