"""The owner's list reads straight off indexes: the total is one primary-key row, and a page of
the newest live videos walks the partial list index in order, with no sort step, on SQLite and
PostgreSQL alike (on data shaped like the bench's: one user owns a fifth, 5 % soft-deleted)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import users, videos
from kensa_gql.adapters.db.videos_store import OWNED_PAGE, OWNED_TOTAL

VIDEOS = 10_000  # as the bench: the owner has 2,000, 1,900 live
OWNER = 1


@pytest.fixture
async def bench_shaped(db: Database) -> Database:
    rows: list[dict[str, Any]] = []
    for i in range(VIDEOS):
        rows.append({"uuid": f"00000000-0000-4000-8000-{i:012d}", "user_id": OWNER if i < VIDEOS // 5 else 2 + i % 4,
                     "prompt": "p", "model": "sora-2", "status": "COMPLETED", "progress": 100, "duration": 4,
                     "aspect_ratio": "16:9", "credits_used": 2, "created_at_ms": 1_000 * i,
                     "deleted_at_ms": 1_000 * i + 1 if i % 20 == 7 else None})
    async with db.writing() as uow:
        await uow.conn.execute(insert(users), [{"id": u, "email": f"u{u}@example.test", "created_at_ms": 0}
                                               for u in range(1, 6)])
        await uow.conn.execute(insert(videos), rows)
        await uow.commit()
    async with db.writing() as uow:
        await uow.conn.execute(text("ANALYZE"))
        await uow.commit()
    return db


async def _plan(db: Database, statement: Select[Any], params: dict[str, int], *, pg_setup: str = "") -> str:
    """EXPLAIN of the statement as the app sends it, with these (integer) parameters."""
    async with db.reading() as uow:
        if uow.is_postgres:
            if pg_setup:
                await uow.conn.exec_driver_sql(pg_setup)
            sql = str(statement.compile(dialect=postgresql.dialect())) % params  # pyformat, ints only
            rows = await uow.conn.exec_driver_sql("EXPLAIN " + sql)
            return "\n".join(r[0] for r in rows)
        compiled = statement.compile(dialect=sqlite.dialect())
        args = tuple(params[name] for name in compiled.positiontup or ())
        rows = await uow.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), args)
        return "\n".join(r[3] for r in rows)


@pytest.mark.parametrize("offset", [0, 1_000])
async def test_a_page_walks_the_partial_list_index_without_sorting(bench_shaped: Database, offset: int) -> None:
    # Far down the list PostgreSQL's planner may prefer a bitmap scan and a sort by its cost
    # settings (random_page_cost), although the index scan is faster: that choice is its own, so
    # there the test checks that the index can serve the page in order once bitmap scans are off.
    setup = "SET LOCAL enable_bitmapscan = off" if offset else ""
    plan = await _plan(bench_shaped, OWNED_PAGE, {"user_id": OWNER, "offset": offset, "limit": 20}, pg_setup=setup)
    assert "ix_videos_user_live" in plan, plan
    assert "sort" not in plan.lower() and "TEMP B-TREE" not in plan, plan
    # Every row the index yields is a live one: no filter left to apply on PostgreSQL (the total's
    # subquery, planned before the scan, reads the users table by its own condition).
    assert "Filter" not in plan[plan.index("ix_videos_user_live"):], plan
    # The total rides along, computed once for the page (an InitPlan / a scalar subquery), from users.
    assert "users" in plan and ("InitPlan" in plan or "SCALAR SUBQUERY" in plan), plan


async def test_the_total_is_one_primary_key_read(bench_shaped: Database) -> None:
    plan = await _plan(bench_shaped, OWNED_TOTAL, {"user_id": OWNER})
    # (PostgreSQL scans a five-row users table rather than use its primary key; either way the
    # owner's videos are not read.)
    assert "users" in plan and "videos" not in plan, plan
