"""Kill the gateway mid-generation (SIGKILL), start it again: nothing is lost, the ledger is exact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import credit_entries
from kensa_gql.services import accounts
from tests.conftest import free_port
from tests.processes import kill_and_check_orphans

GENERATE = {"prompt": "crash drill", "model": "seedance-1-5", "duration": 4, "aspectRatio": "16:9"}


def start_gateway(tmp_path: Path, port: int, log_name: str,
                  database_url: str | None = None, **settings: str) -> subprocess.Popen[bytes]:
    database_url = database_url or f"sqlite+aiosqlite:///{tmp_path}/kensa.db"
    env = {**os.environ, "KENSA_DATABASE_URL": database_url,
           "KENSA_MEDIA_DIR": str(tmp_path / "media"), "KENSA_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "KENSA_LOCAL_GENERATION_SECONDS": "3", "KENSA_LEASE_SECONDS": "2", "KENSA_CLAIM_INTERVAL_SECONDS": "0.2",
           **settings}
    log = (tmp_path / log_name).open("wb")
    return subprocess.Popen([sys.executable, "-m", "kensa_gql", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert proc.poll() is None, "the gateway exited during start-up"
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("gateway did not become ready")


async def test_sigkill_mid_generation_loses_nothing(tmp_path: Path, settings: Any, db: Database,
                                                   make_user: Any) -> None:
    # The db fixture migrated the test's database (SQLite file or PostgreSQL): the subprocesses share it.
    user = await make_user(credits=100)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    # given a gateway generating four videos
    first = start_gateway(tmp_path, port, "first.log", settings.database_url)
    try:
        await wait_ready(url, first)
        async with httpx.AsyncClient(base_url=url) as client:
            uuids = [(await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)).json()[
                "data"]["uuid"] for _ in range(4)]
            # when it is killed while they are generating
            deadline = time.monotonic() + 20
            while True:
                statuses = [(await client.get(f"/api/v1/video/task?uuid={u}", headers=user.headers)).json()[
                    "data"]["status"] for u in uuids]
                if "GENERATING" in statuses or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert "GENERATING" in statuses
    finally:
        # (its render process and resource tracker end with it: nothing is left running)
        kill_and_check_orphans(first)

    # then a restarted gateway finishes every one of them
    second = start_gateway(tmp_path, port, "second.log", settings.database_url)
    try:
        await wait_ready(url, second)
        async with httpx.AsyncClient(base_url=url) as client:
            deadline = time.monotonic() + 60
            while True:
                videos = [(await client.get(f"/api/v1/video/{u}", headers=user.headers)).json()["data"]
                          for u in uuids]
                if all(v["status"] in ("COMPLETED", "FAILED") for v in videos) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert [v["status"] for v in videos] == ["COMPLETED"] * 4
            for v in videos:
                media = await client.get(v["videoUrl"])
                assert media.status_code == 200 and len(media.content) == v["fileSize"]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    # and the ledger is exact: every hold frozen once and settled once
    balance = await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)
    assert balance.frozen == 0 and balance.available + balance.used == 100
    assert balance.used == 4 * 6  # seedance 4 s at 480p: ceil(1.42 * 4)
    async with db.reading() as uow:
        kinds = (await uow.conn.execute(select(credit_entries.c.type, credit_entries.c.video_uuid)
                                        .where(credit_entries.c.user_id == user.user_id))).all()
    for u in uuids:
        assert sorted(k for k, v in kinds if v == u) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]


async def test_a_clean_shutdown_hands_its_tasks_back_at_once(settings: Any, db: Database, make_user: Any) -> None:
    from sqlalchemy import select as sql_select

    from kensa_gql.adapters.db.tables import tasks
    from tests.conftest import LiveServer

    slow = settings.model_copy(update={"local_generation_seconds": 20.0, "lease_seconds": 60.0})
    server = LiveServer(slow)
    server.start()
    user = await make_user(credits=100)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
            for _ in range(100):
                async with db.reading() as uow:
                    owner = (await uow.conn.execute(sql_select(tasks.c.lease_owner))).scalar_one()
                if owner is not None:
                    break
                await asyncio.sleep(0.05)
            assert owner is not None
    finally:
        server.stop()
    async with db.reading() as uow:
        row = (await uow.conn.execute(sql_select(tasks.c.lease_owner, tasks.c.lease_until_ms))).one()
    assert row.lease_owner is None and row.lease_until_ms is None


async def test_a_video_left_uploading_by_a_crash_is_finished_by_the_next_runner(settings: Any, db: Database,
                                                                              make_user: Any) -> None:
    from sqlalchemy import update

    from kensa_gql.adapters.db.tables import tasks, videos
    from tests.conftest import LiveServer
    from tests.support import wait_for_status

    user = await make_user(credits=100)
    # given a video that a dead runner had moved to UPLOADING
    api_only = LiveServer(settings, run_worker=False)
    api_only.start()
    try:
        async with httpx.AsyncClient(base_url=api_only.url) as client:
            uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)).json()[
                "data"]["uuid"]
    finally:
        api_only.stop()
    async with db.writing() as uow:
        await uow.conn.execute(update(videos).where(videos.c.uuid == uuid).values(
            status="UPLOADING", progress=99, provider="local"))
        await uow.conn.execute(update(tasks).values(provider_task_id=f"local-{uuid}"))
        await uow.commit()
    # when a runner starts
    server = LiveServer(settings)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"})
    finally:
        server.stop()
    # then it completes and is charged exactly once
    assert video["status"] == "COMPLETED"
    balance = await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)
    assert (balance.frozen, balance.used) == (0, 6)
