"""PostgreSQL's raw read path: its own asyncpg pool, no engine connection per read, and the
ordinary path when its connections are gone or the switch is off."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import event

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.reads import _POSTGRES, PG_APPLICATION_NAME
from tests.adapters.test_reads import World, build_world
from tests.backends import POSTGRES_URL

# PostgreSQL only: these behaviours are the asyncpg fast path's own.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
async def world(db: Database) -> World:
    return await build_world(db)


async def test_the_raw_path_takes_no_pooled_connection_of_the_engine(world: World) -> None:
    checkouts = 0

    def count(*_args: object) -> None:
        nonlocal checkouts
        checkouts += 1

    event.listen(world.db.engine.sync_engine.pool, "checkout", count)
    try:
        reads = world.db.reads
        assert reads.fast
        assert await reads.owned_video(world.mine[0].uuid, world.me) == world.mine[0]
        assert (await reads.owned_videos(world.me, offset=0, limit=20))[1] == 7
        assert checkouts == 0 and reads.fallbacks == 0
    finally:
        event.remove(world.db.engine.sync_engine.pool, "checkout", count)


async def test_reads_still_answer_when_the_fast_paths_sessions_are_killed(world: World) -> None:
    reads = world.db.reads
    assert await reads.owned_video(world.mine[0].uuid, world.me) == world.mine[0]
    # given every session of the fast path's pool is terminated by the server...
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = $2", PG_APPLICATION_NAME, world.db.engine.url.database)
    finally:
        await admin.close()
    assert killed >= 1
    # ...every read still answers what the store has (through the ordinary path, or a fresh session)
    for _ in range(3):
        assert await reads.owned_video(world.mine[1].uuid, world.me) == world.mine[1]
        assert await reads.owned_videos(world.me, offset=0, limit=2) == (list(reversed(world.mine))[:2], 7)
    assert reads.fallbacks <= 2


async def test_the_switch_turns_the_raw_path_off(world: World) -> None:
    db = Database(world.db.engine, fast_reads=False)
    assert not db.reads.fast
    assert await db.reads.owned_video(world.mine[0].uuid, world.me) == world.mine[0]


async def test_queue_places_skip_the_ranking_when_none_of_the_videos_waits(db: Database, database_url: str) -> None:
    # PostgreSQL ranks in one statement whose waiting check is a one-time filter: when it is
    # false the ranking below it is never executed (the plan says so), however long the queue.
    ranking = _POSTGRES["queue_places"]
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + ranking.sql,
            *ranking.args({"uuids": ["9b2f6a0e-4c1d-4e8a-9f3b-0a1b2c3d4e5f"]})))
    finally:
        await conn.close()
    assert "One-Time Filter" in plan, plan
    window = [line for line in plan.splitlines() if "WindowAgg" in line]
    assert window and all("never executed" in line for line in window), plan
