"""The one-statement generate on PostgreSQL (adapters/db/express.py) against the ordinary way."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.express import Express, NewVideo, Snapshots
from kensa_gql.adapters.db.ledger_store import LedgerRaceError
from kensa_gql.adapters.db.tables import videos
from kensa_gql.domain.errors import InsufficientCredits, Unavailable
from kensa_gql.domain.ledger import PackageType
from kensa_gql.services import accounts, ledger
from kensa_gql.services.accounts import Principal
from kensa_gql.services.videos import generate_video
from tests.adapters.test_combined_writes_postgres import ledger_rows, live_videos_of
from tests.audit import audit_ledger
from tests.services.test_live_video_counts import REQUEST, make_deps, price

FAR = 4_000_000_000_000  # an expiry no test reaches


# PostgreSQL only: SQLite has no express generate.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def _grant(db: Database, user: int, amount: int, kind: PackageType, expires_at_ms: int | None) -> None:
    async with db.writing() as uow:
        await ledger.grant(uow, user_id=user, amount=amount, kind=kind, expires_at_ms=expires_at_ms,
                           now_ms=FAR - 10**12)
        await uow.commit()


async def _story(db: Database, email: str) -> Principal:
    principal, _ = await accounts.create_user(email, credits=3 * price(), db=db)
    deps = make_deps(db)
    await _grant(db, principal.user_id, 2 * price(), PackageType.GIFT, FAR)  # taken first: it expires
    for _ in range(2):
        await generate_video(REQUEST, principal, deps=deps)
    await _grant(db, principal.user_id, price(), PackageType.PURCHASE, None)  # moves the version
    for _ in range(4):
        await generate_video(REQUEST, principal, deps=deps)
    with pytest.raises(InsufficientCredits):
        await generate_video(REQUEST, principal, deps=deps)
    return principal


def _timeless(rows: dict[str, Any]) -> dict[str, Any]:
    """The rows without the wall-clock times the two runs cannot share."""
    return {**rows, "holds": [r[:2] for r in rows["holds"]], "entries": [r[:6] for r in rows["entries"]],
            "tasks": [(r[0], r[1], r[3], r[5]) for r in rows["tasks"]]}


async def test_express_generates_leave_the_rows_the_ordinary_way_leaves(database_url: str, db: Database) -> None:
    stock = Database(create_engine(database_url), combined_writes=False)
    try:
        # given the same story of grants, generates and a refusal, told both ways
        express_user = await _story(db, "express@example.test")
        stock_user = await _story(stock, "stock@example.test")
        # then the express way was taken, and the rows are the same
        assert db.snapshots is not None and db.snapshots.get(express_user.user_id) is not None
        assert stock.snapshots is None
        expected = _timeless(await ledger_rows(stock, stock_user.user_id))
        assert _timeless(await ledger_rows(db, express_user.user_id)) == expected
        for database, user in ((db, express_user), (stock, stock_user)):
            audit = await audit_ledger(database, user.user_id)
            assert (audit.available, audit.frozen) == (0, 6 * price())
            assert await live_videos_of(database, user.user_id) == 6
    finally:
        await stock.dispose()


def _snapshots(db: Database) -> Snapshots:
    assert db.snapshots is not None, "PostgreSQL with combined writes and raw paths on"
    return db.snapshots


def _new_video(user: int) -> NewVideo:
    return NewVideo(uuid=str(uuid.uuid4()), user_id=user, prompt="p", model="sora-2", duration=4, resolution="720p",
                    aspect_ratio="16:9", start_image_url=None, credits=2, now_ms=FAR - 10**12, deadline_at_ms=None,
                    route=json.dumps(["a"]), traceparent=None)


async def _video_count(db: Database) -> int:
    async with db.reading() as uow:
        return int((await uow.conn.execute(select(func.count()).select_from(videos))).scalar_one())


async def test_a_state_whose_version_moved_writes_nothing(db: Database) -> None:
    # given an account's state as read, then another ledger write
    principal, _ = await accounts.create_user("moved@example.test", credits=10, db=db)
    user = principal.user_id
    async with db.writing(account=user) as uow:
        express = Express(uow, _snapshots(db))
        seen = await express.snapshot(user)
        assert seen is not None
        await _grant(db, user, 5, PackageType.GIFT, None)
        # when a generate is written from the old state, then nothing is, and nothing is remembered
        moves, allocations = ledger.plan_freeze(seen.packages, 2, FAR - 10**12)
        assert await express.generate(_new_video(user), seen=seen, moves=moves, allocations=allocations,
                                      balance_after=8) is None
    assert _snapshots(db).get(user) is None
    assert await _video_count(db) == 0 and await live_videos_of(db, user) == 0
    assert (await audit_ledger(db, user)).frozen == 0


async def test_a_package_changed_behind_the_version_aborts_the_whole_statement(db: Database) -> None:
    # given a remembered state, then a package changed without the version (what no code does)
    principal, _ = await accounts.create_user("behind@example.test", credits=10, db=db)
    user = principal.user_id
    async with db.writing(account=user) as uow:
        seen = await Express(uow, _snapshots(db)).snapshot(user)
    assert seen is not None
    async with db.writing() as uow:
        await uow.conn.execute(text("UPDATE credit_packages SET remaining = remaining - 1, expired = expired + 1 "
                                    "WHERE user_id = :user"), {"user": user})
        await uow.commit()
    # when a generate is written from it, then the statement fails whole: no video, no hold
    async with db.writing(account=user) as uow:
        moves, allocations = ledger.plan_freeze(seen.packages, 2, FAR - 10**12)
        with pytest.raises(LedgerRaceError):
            await Express(uow, _snapshots(db)).generate(_new_video(user), seen=seen, moves=moves,
                                                      allocations=allocations, balance_after=8)
    assert await _video_count(db) == 0 and await live_videos_of(db, user) == 0


async def test_a_connection_lost_under_it_is_unavailable_and_leaves_the_pool(database_url: str, db: Database) -> None:
    # given a user whose generates go the express way, and a session killed while pooled
    principal, _ = await accounts.create_user("lost@example.test", credits=10 * price(), db=db)
    deps = make_deps(db)
    await generate_video(REQUEST, principal, deps=deps)
    async with db.reading() as uow:
        pid = (await uow.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    # when the next generate gets that connection (used a moment ago: not pinged), then it is
    # told to come back later, and the one after it succeeds on a fresh connection
    with pytest.raises(Unavailable):
        await generate_video(REQUEST, principal, deps=deps)
    await generate_video(REQUEST, principal, deps=deps)
    assert (await audit_ledger(db, principal.user_id)).frozen == 2 * price()


def test_the_express_way_is_off_without_raw_paths_or_combined_writes(database_url: str) -> None:
    engine = create_engine(database_url)
    assert Database(engine).snapshots is not None
    assert Database(engine, fast_reads=False).snapshots is None  # as behind a transaction-mode pooler
    assert Database(engine, combined_writes=False).snapshots is None


async def test_a_generate_beside_an_older_release_still_succeeds_from_a_fresh_read(db: Database) -> None:
    # given a user whose state this process remembers, then a package moved without the version,
    # as a process of the previous release moves it (it locks accounts without bumping them)
    principal, _ = await accounts.create_user("older@example.test", credits=3 * price(), db=db)
    deps = make_deps(db)
    await generate_video(REQUEST, principal, deps=deps)  # the state is remembered from here on
    async with db.writing() as uow:
        await uow.conn.execute(text("UPDATE credit_packages SET remaining = remaining - 1, expired = expired + 1 "
                                    "WHERE user_id = :user"), {"user": principal.user_id})
        await uow.commit()
    # when the user generates again: then it is accepted (no 500), from the packages as they are
    made = await generate_video(REQUEST, principal, deps=deps)
    assert made.video.credits_used == price()
    assert await live_videos_of(db, principal.user_id) == 2
