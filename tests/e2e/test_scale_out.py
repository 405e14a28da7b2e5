"""Scale-out with real processes on PostgreSQL and Redis: replicas, workers, a burst and a SIGKILL.

Each test is what an operator would try: fresh database, ``serve --no-worker`` replicas and
``worker`` processes sharing it and Redis, driven over HTTP, checked against the ledger.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.tables import tasks, videos
from kensa_gql.adapters.db.videos_store import videos_by_uuid
from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.domain.videos import Video, VideoStatus
from kensa_gql.services import accounts
from kensa_gql.services.following import Watch
from kensa_gql.settings import Settings
from tests.api.graphql.wire import VIDEO_STATUS, generate, open_session
from tests.audit import audit_ledger
from tests.backends import POSTGRES_URL, PrivateRedis, require_redis
from tests.processes import GatewayProcess, Replica, Worker, gateway_env

pytestmark = [pytest.mark.parametrize("database_url", ["postgres"], indirect=True), pytest.mark.timeout(240)]

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


@pytest.fixture
def deployment(settings: Settings) -> Settings:
    return settings.model_copy(update={"broadcast_url": require_redis()})


@pytest.fixture
async def database(deployment: Settings) -> AsyncIterator[Database]:
    db = Database(create_engine(deployment.database_url))
    yield db
    await db.dispose()


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        process.stop()


def launch(processes: list[GatewayProcess], *new: GatewayProcess) -> None:
    for process in new:
        process.start()
        processes.append(process)
    for process in new:
        process.wait_ready()  # type: ignore[attr-defined]


async def make_user(db: Database, credits: int) -> tuple[int, dict[str, str]]:
    principal, issued = await accounts.create_user("operator@example.test", credits=credits, db=db)
    return principal.user_id, {"Authorization": f"Bearer {issued.key}"}


async def test_a_burst_over_two_replicas_never_overspends(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given two API replicas on one PostgreSQL database, and a user whose balance covers k videos
    env = gateway_env(deployment)
    a, b = Replica("replica-a", env, tmp_path), Replica("replica-b", env, tmp_path)
    launch(processes, a, b)
    covered, burst = 12, 40
    user_id, headers = await make_user(database, credits=covered)

    # when a burst of generates is spread over both replicas at once (connections opened first,
    # so neither replica starts late)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=burst)) as client:
        await asyncio.gather(*(client.get(f"{(a, b)[n % 2].url}/readyz") for n in range(burst)))
        started = time.monotonic()
        responses = await asyncio.gather(*(
            client.post(f"{(a, b)[n % 2].url}/api/v1/video/generate", json=GENERATE, headers=headers)
            for n in range(burst)))
        elapsed = time.monotonic() - started

    # then exactly k are accepted, the rest refused with 402, and the ledger is exact
    codes = [r.status_code for r in responses]
    assert sorted(codes) == [200] * covered + [402] * (burst - covered), [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"INSUFFICIENT_CREDITS"}
    accepted_by = {name: sum(1 for n, r in enumerate(responses) if r.status_code == 200 and n % 2 == i)
                   for i, name in enumerate(("a", "b"))}
    audit = await audit_ledger(database, user_id)
    assert (audit.available, audit.frozen, audit.tasks_left) == (0, covered, covered)
    assert audit.statuses == {"PENDING": covered}
    print(f"\nburst: {burst} generates over 2 replicas in {elapsed:.2f}s -> {codes.count(200)} accepted "
          f"(a={accepted_by['a']}, b={accepted_by['b']}), {codes.count(402)} refused; ledger exact")


async def _leases(db: Database) -> dict[int, str | None]:
    async with db.reading() as uow:
        rows = await uow.conn.execute(select(tasks.c.video_id, tasks.c.lease_owner))
        return {int(r[0]): r[1] for r in rows}


async def _statuses(db: Database, ids: list[int]) -> dict[int, str]:
    async with db.reading() as uow:
        rows = await uow.conn.execute(select(videos.c.id, videos.c.status).where(videos.c.id.in_(ids)))
        return {int(r[0]): r[1] for r in rows}


async def _follow(watch_events: VideoEvents, uuid: str, seen: dict[str, list[Video]]) -> None:
    async with Watch(uuid, watch_events.watchers) as watch:
        seen[uuid] = []
        while not seen[uuid] or not seen[uuid][-1].status.is_terminal:
            seen[uuid].append(await watch.next())


async def test_a_worker_killed_mid_generation_loses_nothing(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given one API replica and two workers, each holding at most 3 tasks, with 2-second leases
    deployment = deployment.model_copy(update={
        "local_generation_seconds": 3.0, "lease_seconds": 2.0, "claim_batch": 2, "max_running_tasks": 3,
        "poll_interval_seconds": 0.3})
    env = gateway_env(deployment)
    api = Replica("api", env, tmp_path)
    victim, survivor = Worker("worker-victim", env, tmp_path), Worker("worker-survivor", env, tmp_path)
    launch(processes, api, victim, survivor)
    user_id, headers = await make_user(database, credits=10)
    # and a subscriber in this process, on Redis, like a third replica's subscriptions
    observer = VideoEvents(deployment.broadcast_url, reread=lambda uuids: videos_by_uuid(database.reading, uuids))
    await observer.start()
    seen: dict[str, list[Video]] = {}
    followers: list[asyncio.Task[None]] = []
    try:
        # when six videos are generated through the API
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            uuids = []
            for _ in range(6):
                r = await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)
                assert r.status_code == 200, r.text
                uuids.append(r.json()["data"]["uuid"])
                followers.append(asyncio.create_task(_follow(observer, uuids[-1], seen)))
        async with database.reading() as uow:
            rows = await uow.conn.execute(select(videos.c.id).where(videos.c.uuid.in_(uuids)))
            ids = sorted(int(r[0]) for r in rows)

        # and the victim is killed while it is generating
        async with asyncio.timeout(60):
            while True:
                leases = await _leases(database)
                held = [vid for vid, owner in leases.items() if owner == victim.owner]
                statuses = await _statuses(database, held)
                if any(s == "GENERATING" for s in statuses.values()) and \
                        any(owner == survivor.owner for owner in leases.values()):
                    break
                await asyncio.sleep(0.05)
        victim.kill()
        killed_at = time.monotonic()
        print(f"\nSIGKILL worker holding videos {held} (survivor holds "
              f"{[v for v, o in leases.items() if o == survivor.owner]})")

        # then every video still completes, the victim's after its lease ran out
        async with asyncio.timeout(150):
            while set((await _statuses(database, ids)).values()) != {"COMPLETED"}:
                assert "FAILED" not in (await _statuses(database, ids)).values()
                await asyncio.sleep(0.1)
        recovered = time.monotonic() - killed_at
        async with asyncio.timeout(30):
            await asyncio.gather(*followers)
    finally:
        for follower in followers:
            follower.cancel()
        await observer.stop()

    # and the ledger is exact: six holds, each frozen once and settled once
    audit = await audit_ledger(database, user_id)
    assert audit.holds == {"POSTED": 6}
    assert (audit.available, audit.frozen, audit.used, audit.tasks_left) == (4, 0, 6, 0)
    # and nobody drove a task another runner held
    for worker in (survivor,):
        assert "lost the lease" not in worker.log() and "stopped driving" not in worker.log()
    # and the subscriber here followed every video, through Redis, to COMPLETED
    assert {u: s[-1].status for u, s in seen.items()} == {u: VideoStatus.COMPLETED for u in uuids}
    assert any(len(s) > 1 for s in seen.values()), "no intermediate status ever arrived"
    print(f"SIGKILL: all 6 COMPLETED {recovered:.1f}s after the kill (lease 2s); ledger exact; "
          f"the Redis subscriber saw {sum(len(s) for s in seen.values())} updates")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_a_worker_rides_out_a_database_outage(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given a worker reporting its health in a file, and an API replica
    health = tmp_path / "worker-alive"
    env = gateway_env(deployment, KENSA_WORKER_HEALTH_FILE=str(health))
    api, worker = Replica("api", env, tmp_path), Worker("worker", env, tmp_path)
    launch(processes, api, worker)
    async with asyncio.timeout(30):
        while not health.exists():  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.05)
    name = urlsplit(deployment.database_url).path.lstrip("/")
    user_id, headers = await make_user(database, credits=3)
    await database.dispose()  # our own pool must not hold connections across the outage
    # when the database refuses and drops every connection for a while
    try:
        await _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        await asyncio.to_thread(worker.wait_for_log, r"claiming tasks failed \(2 in a row\)", 60)
    finally:
        await _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    # then, once it is back, the same worker process still picks up and finishes new work
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        async with asyncio.timeout(60):
            while (r := await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)).status_code != 200:
                assert r.status_code >= 500, r.text  # the replica's own pool may need a moment too
                await asyncio.sleep(0.2)
            uuid = r.json()["data"]["uuid"]
            while (await client.get(f"/api/v1/video/{uuid}", headers=headers)).json()["data"]["status"] \
                    != "COMPLETED":  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.1)
    assert worker.process is not None and worker.process.poll() is None
    audit = await audit_ledger(database, user_id)
    assert (audit.used, audit.available) == (1, 2)


async def _status_of(db: Database, uuid: str) -> str:
    async with db.reading() as uow:
        status: str = (await uow.conn.execute(select(videos.c.status).where(videos.c.uuid == uuid))).scalar_one()
    return status


async def _follow_over_websocket(replica: Replica, key: str, uuid: str) -> list[dict[str, Any]]:
    session = await open_session(replica.url, key=key)
    try:
        assert (await session.receive())["type"] == "connection_ack"
        await session.subscribe("follow", VIDEO_STATUS, {"uuid": uuid})
        return await session.until_done("follow")
    finally:
        await session.close()


async def _key_for(db: Database) -> tuple[int, str]:
    principal, issued = await accounts.create_user("watcher@example.test", credits=5, db=db)
    return principal.user_id, issued.key


async def test_a_subscriber_on_one_replica_follows_a_video_generated_through_another(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given replicas A and B and a worker, sharing PostgreSQL and Redis
    env = gateway_env(deployment.model_copy(update={"local_generation_seconds": 2.0}))
    a, b, worker = Replica("replica-a", env, tmp_path), Replica("replica-b", env, tmp_path), \
        Worker("worker", env, tmp_path)
    launch(processes, a, b, worker)
    user_id, key = await _key_for(database)
    # when a video is generated through B's GraphQL API and followed over a WebSocket on A
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        uuid = await generate(client, key)
    messages = await asyncio.wait_for(_follow_over_websocket(a, key, uuid), 60)
    # then A streams every change the worker made, through Redis, up to COMPLETED
    assert [m["type"] for m in messages][-1] == "complete"
    videos = [m["payload"]["data"]["videoStatus"] for m in messages if m["type"] == "next"]
    assert videos[-1]["status"] == "COMPLETED" and videos[-1]["videoUrl"]
    assert len(videos) >= 3, videos  # the snapshot, at least one change in flight, the end
    progress = [v["progress"] for v in videos]
    assert progress == sorted(progress)
    assert (await audit_ledger(database, user_id)).used == 1


async def test_a_subscriber_gets_the_terminal_status_across_a_redis_restart(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given replicas and a worker on a Redis of this test's own
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        env = gateway_env(deployment.model_copy(update={"broadcast_url": redis.url,
                                                        "local_generation_seconds": 3.0}))
        a, b, worker = Replica("replica-a", env, tmp_path), Replica("replica-b", env, tmp_path), \
            Worker("worker", env, tmp_path)
        launch(processes, a, b, worker)
        user_id, key = await _key_for(database)
        async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
            uuid = await generate(client, key)
        session = await open_session(a.url, key=key)
        try:
            assert (await session.receive())["type"] == "connection_ack"
            await session.subscribe("follow", VIDEO_STATUS, {"uuid": uuid})
            first = await session.receive()
            assert first["type"] == "next"
            # when Redis dies while the client is subscribed, and the video completes meanwhile
            redis.kill()
            async with asyncio.timeout(60):
                while await _status_of(database, uuid) != "COMPLETED":  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
            # and Redis comes back
            redis.start()
            # then replica A resubscribes, re-reads the video and the client gets the end
            rest = await session.until_done("follow")
        finally:
            await session.close()
        statuses = [m["payload"]["data"]["videoStatus"]["status"] for m in [first, *rest] if m["type"] == "next"]
        assert statuses[-1] == "COMPLETED" and rest[-1]["type"] == "complete"
        a.wait_for_log("events resubscribed", timeout=10)  # the log is written in batches
        assert (await audit_ledger(database, user_id)).used == 1
    finally:
        redis.stop()


async def test_an_sse_stream_gets_the_terminal_status_across_a_redis_restart(
        deployment: Settings, database: Database, processes: list[GatewayProcess], tmp_path: Path) -> None:
    # given a replica and a worker on a Redis of this test's own
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        env = gateway_env(deployment.model_copy(update={"broadcast_url": redis.url,
                                                        "local_generation_seconds": 3.0}))
        a, worker = Replica("replica-a", env, tmp_path), Worker("worker", env, tmp_path)
        launch(processes, a, worker)
        user_id, key = await _key_for(database)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=a.url, timeout=60) as client:
            uuid = await generate(client, key)
            statuses: list[str] = []
            async with client.stream("GET", f"/api/v1/video/{uuid}/events", headers=headers) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("data:"):
                        statuses.append(json.loads(line[5:])["status"])
                        break
                # when Redis dies while the stream is open, and the video completes meanwhile
                redis.kill()
                async with asyncio.timeout(60):
                    while await _status_of(database, uuid) != "COMPLETED":  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.1)
                # and Redis comes back
                redis.start()
                # then the replica resubscribes, re-reads the video, and the stream sends the end and closes
                async with asyncio.timeout(60):
                    async for line in lines:
                        if line.startswith("data:"):
                            statuses.append(json.loads(line[5:])["status"])
        assert statuses[0] != "COMPLETED" and statuses[-1] == "COMPLETED", statuses
        a.wait_for_log("events resubscribed", timeout=10)  # logged just after the re-read video is offered
        assert (await audit_ledger(database, user_id)).used == 1
    finally:
        redis.stop()
