"""A pooled PostgreSQL connection that died while idle is replaced on checkout, not handed out."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine

# PostgreSQL only.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def test_a_connection_killed_while_idle_is_replaced_at_checkout(database_url: str) -> None:
    db = Database(create_engine(database_url, ping_idle_seconds=0.0))
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        # given a pooled connection, whose session is then killed while it sits in the pool
        async with db.reading() as uow:
            pid = (await uow.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        # when the next unit of work checks one out, then it gets a live one and its work succeeds
        async with db.writing() as uow:
            assert (await uow.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
            await uow.commit()
    finally:
        await admin.close()
        await db.dispose()
