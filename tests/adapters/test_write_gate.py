"""SQLite writers of one process queue for the database in order, holding one pooled connection
between them, and a writer that fails or is cancelled lets the next one in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from kensa_gql.adapters.db.database import Database
from kensa_gql.services import accounts


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: PostgreSQL writers lock rows, not the database."""
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


async def test_concurrent_writers_hold_one_connection_and_all_commit(db: Database) -> None:
    principal, _ = await accounts.create_user("gate@example.test", db=db)
    peak = 0

    async def writer() -> None:
        nonlocal peak
        async with db.writing() as uow:
            peak = max(peak, db.engine.pool.checkedout())  # type: ignore[attr-defined]
            await uow.conn.execute(text("UPDATE credit_accounts SET version = version + 1 WHERE user_id = :u"),
                                   {"u": principal.user_id})
            await asyncio.sleep(0.005)
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(12))), 30)
    async with db.reading() as uow:
        version = (await uow.conn.execute(text("SELECT version FROM credit_accounts"))).scalar_one()
    assert peak == 1 and version == 12


async def test_a_failed_or_cancelled_writer_lets_the_next_in(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.writing():
            raise RuntimeError("boom")
    holder_inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.writing():
            holder_inside.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await asyncio.wait_for(holder_inside.wait(), 10)
    waiting = asyncio.create_task(db.writing().__aenter__())
    await asyncio.sleep(0.05)
    waiting.cancel()  # gave up while queued
    await asyncio.gather(waiting, return_exceptions=True)
    release.set()
    await asyncio.wait_for(held, 10)
    async with asyncio.timeout(10):
        async with db.writing() as uow:
            await uow.commit()
