"""The Alembic migrations build the same schema on SQLite and PostgreSQL, and it enforces the same rules."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import credit_entries, credit_packages, metadata, users, videos

BIG = 2**40  # past 32 bits: ids and millisecond times must be 64-bit on both backends


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _indexes(conn: Connection) -> dict[str, set[str]]:
    inspector = inspect(conn)
    return {t: {ix["name"] or "" for ix in inspector.get_indexes(t)} for t in inspector.get_table_names()}


async def test_migrations_build_exactly_the_declared_tables(db: Database) -> None:
    async with db.reading() as uow:
        assert await uow.conn.run_sync(_differences) == []
        indexes = await uow.conn.run_sync(_indexes)
    assert "ix_tasks_next_run_at_ms" in indexes["tasks"]
    assert "ix_videos_user_live" in indexes["videos"]
    assert "ix_credit_entries_user_history" in indexes["credit_entries"]


async def _insert(db: Database, table: Any, **values: Any) -> None:
    async with db.writing() as uow:
        await uow.conn.execute(insert(table).values(**values))
        await uow.commit()


@pytest.fixture
async def user(db: Database) -> int:
    await _insert(db, users, id=BIG, email="big@example.test", created_at_ms=BIG)
    return BIG


PACKAGE = {"type": "gift", "amount": 10, "remaining": 10, "frozen": 0, "used": 0, "expired": 0,
           "created_at_ms": 0}


@pytest.mark.parametrize("bad", [
    {"remaining": 9},                              # buckets no longer add up to the amount
    {"amount": 0, "remaining": 0},                 # empty package
    {"remaining": 11, "frozen": -1},               # negative bucket
])
async def test_package_check_constraints_refuse_bad_buckets(db: Database, user: int,
                                                            bad: dict[str, int]) -> None:
    with pytest.raises(IntegrityError):
        await _insert(db, credit_packages, user_id=user, **{**PACKAGE, **bad})


async def test_a_hold_gets_each_entry_type_at_most_once(db: Database, user: int) -> None:
    entry = {"user_id": user, "type": "settle", "credits": 0, "balance_after": 0, "hold_id": 7,
             "created_at_ms": BIG}
    await _insert(db, credit_entries, trans_no="T1", **entry)
    with pytest.raises(IntegrityError):
        await _insert(db, credit_entries, trans_no="T2", **entry)


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await _insert(db, videos, uuid="u", user_id=424242, prompt="p", model="sora-2", status="PENDING",
                      duration=4, aspect_ratio="16:9", credits_used=1, created_at_ms=0)


async def test_ids_and_times_are_64_bit(db: Database, user: int) -> None:
    await _insert(db, credit_packages, user_id=user, **{**PACKAGE, "expires_at_ms": BIG * 1000})
    async with db.reading() as uow:
        row = (await uow.conn.execute(credit_packages.select())).one()
    assert (row.user_id, row.expires_at_ms) == (BIG, BIG * 1000)
