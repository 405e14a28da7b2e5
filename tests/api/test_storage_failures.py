"""Media storage that cannot be written: the runner tries a bounded number of times, then the video
FAILS with a clear message, its credits are released once, nothing of it is published and nothing
is left in the work directory; /readyz says which part of storage cannot be written.

How writes are made to fail for real: tests may run as root, where ``chmod`` stops nothing. A
folder of the store replaced by a regular file fails every write under it in the kernel (ENOTDIR /
EEXIST), whoever the user, as a read-only mount or a vanished volume would: no fake, no patch.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.server import _report_health
from tests.audit import audit_ledger
from tests.conftest import Serve, User
from tests.support import wait_for_status

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
ATTEMPTS = 3
WHY = "query($uuid: ID!) { video(uuid: $uuid) { status errorMessage videoUrl thumbnailUrl } }"


def block(media: Path, folder: str) -> Path:
    """Make ``media/folder`` a regular file, so that nothing can be written beneath it."""
    media.mkdir(parents=True, exist_ok=True)
    blocker = media / folder
    blocker.write_text("not a directory")
    return blocker


@pytest.mark.parametrize("folder", ["videos", "thumbnails"])
async def test_unwritable_storage_fails_the_video_soon_releases_its_credits_once_and_publishes_nothing(
        serve: Serve, make_user: Any, db: Database, tmp_path: Path, folder: str) -> None:
    # given a gateway whose media folder cannot be written (the other one can)
    media = tmp_path / "media"
    blocker = block(media, folder)
    server = serve(store_attempts=ATTEMPTS, store_backoff_seconds=0.05)
    user: User = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # then readiness names the folder before anything is generated
        ready = await client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert f"{folder}/" in ready.json()["storage"]

        # when a video is generated
        started = time.monotonic()
        r = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
        assert r.status_code == 200, r.text
        uuid = r.json()["data"]["uuid"]
        video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"}, timeout=30)
        took = time.monotonic() - started

        # then it FAILS within seconds (not at the task timeout), saying why
        assert video["status"] == "FAILED", video
        seen = (await client.post("/graphql", json={"query": WHY, "variables": {"uuid": uuid}},
                                  headers=user.headers)).json()["data"]["video"]
        assert seen["errorMessage"].startswith("could not store the result: storing "), seen
        assert str(tmp_path) not in seen["errorMessage"]  # no host paths reach clients
        assert took < 20
        # and nothing of it is published, under either name
        assert video["videoUrl"] in (None, "") and video["thumbnailUrl"] in (None, "")
        for path in (f"/media/videos/{uuid}.mp4", f"/media/thumbnails/{uuid}.jpg"):
            assert (await client.get(path)).status_code == 404, path
        published = [p.name for p in media.rglob("*") if p.is_file() and p != blocker]
        assert not [name for name in published if uuid in name], published
        # and the work directory is empty
        assert [p.name for p in (media / ".work").iterdir()] == []

        # and once storage can be written again, readiness recovers and videos complete
        blocker.unlink()
        assert (await client.get("/readyz")).status_code == 200
        r = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
        done = await wait_for_status(client, user, r.json()["data"]["uuid"], {"COMPLETED", "FAILED"})
        assert done["status"] == "COMPLETED", done

    # and the ledger is exact: the failed video's hold released once, the other one settled
    audit = await audit_ledger(db, user.user_id)
    assert audit.frozen == 0 and audit.used > 0 and audit.available + audit.used == 100
    assert audit.holds == {"VOIDED": 1, "POSTED": 1}, audit.holds
    assert audit.statuses == {"FAILED": 1, "COMPLETED": 1} and audit.tasks_left == 0


class AlwaysClaiming:
    """What the health reporter reads of a runner: its claim rounds are succeeding."""

    @property
    def last_claim_at(self) -> float:
        return time.monotonic()


async def test_a_worker_reports_itself_unhealthy_while_storage_cannot_be_written(tmp_path: Path) -> None:
    # given a worker's health reporter over a store whose videos/ folder cannot be written
    blocker = block(tmp_path / "media", "videos")
    storage = LocalStorage(tmp_path / "media", base_url="http://gw.test/media")
    alive = tmp_path / "worker-alive"
    reporter = asyncio.create_task(_report_health(AlwaysClaiming(), storage, alive,  # type: ignore[arg-type]
                                                  every=0.02))
    try:
        # then it does not touch its health file
        await asyncio.sleep(0.3)
        assert not alive.exists()
        # and once storage can be written again, it does
        blocker.unlink()
        async with asyncio.timeout(10):
            while not alive.exists():  # noqa: ASYNC110 - the reporter runs in a task of its own
                await asyncio.sleep(0.02)
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)


async def test_an_api_only_process_is_ready_whatever_the_media_folders(serve: Serve, tmp_path: Path) -> None:
    # an API replica never writes media (the workers do), so storage is not its readiness
    block(tmp_path / "media", "videos")
    server = serve(run_worker=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "storage" not in ready.json()
