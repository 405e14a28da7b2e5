"""SQLite's raw read path: no pooled connection per read, and a fallback when the file is locked."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import event

from kensa_gql.adapters.db.database import Database
from tests.adapters.test_reads import World, build_world


@pytest.fixture
def database_url(tmp_path: object) -> str:
    """SQLite only: these behaviours are the SQLite fast path's own."""
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


@pytest.fixture
async def world(db: Database) -> World:
    return await build_world(db)


async def test_the_raw_path_takes_no_pooled_connection(world: World) -> None:
    checkouts = 0

    def count(*_args: object) -> None:
        nonlocal checkouts
        checkouts += 1

    event.listen(world.db.engine.sync_engine.pool, "checkout", count)
    try:
        reads = world.db.reads
        assert reads.fast
        await reads.owned_video(world.mine[0].uuid, world.me)
        await reads.owned_videos(world.me, offset=0, limit=20)
        assert checkouts == 0
    finally:
        event.remove(world.db.engine.sync_engine.pool, "checkout", count)


async def test_a_locked_database_falls_back_and_still_answers(world: World) -> None:
    reads = world.db.reads
    path = world.db.engine.url.database
    assert path is not None
    locked, release = threading.Event(), threading.Event()

    def hold_exclusive_lock() -> None:
        # EXCLUSIVE locking mode shuts every other connection out of a WAL database until released.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    # Nothing else may have the file open when the lock is taken.
    reads.close()
    await world.db.engine.dispose()
    holder = threading.Thread(target=hold_exclusive_lock)
    holder.start()
    assert await asyncio.to_thread(locked.wait, 30)
    try:
        # given the fast path cannot read now, when a read comes in it waits on the ordinary path...
        read = asyncio.create_task(reads.owned_video(world.mine[0].uuid, world.me))
        await asyncio.sleep(0.2)
        assert reads.fallbacks == 1
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 30)
    # ...and answers correctly once the lock is gone
    assert await asyncio.wait_for(read, 30) == world.mine[0]
