"""PostgreSQL's combined generate writes (one statement for the video and its task, one for a
freeze) leave exactly the rows the one-statement-each path leaves, and refuse a stale package."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.ledger_store import LedgerRaceError, LedgerStore
from kensa_gql.adapters.db.tables import (
    credit_entries,
    credit_holds,
    credit_packages,
    hold_allocations,
    tasks,
    users,
)
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain import ledger as rules
from kensa_gql.domain.errors import InsufficientCredits
from kensa_gql.domain.ledger import Allocation, PackageType
from kensa_gql.services import accounts, ledger
from kensa_gql.services.videos import generate_video
from tests.audit import audit_ledger
from tests.services.test_live_video_counts import REQUEST, make_deps, price

T0 = 1_900_000_000_000
DAY = 86_400_000


# PostgreSQL only: SQLite has no combined writes.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def _generate(db: Database, user_id: int, amount: int, now: int) -> None:
    async with db.writing(account=user_id) as uow:
        video = await VideosStore(uow).add_queued(
            uuid=str(uuid.uuid4()), user_id=user_id, prompt="p", model="sora-2", duration=4, resolution="720p",
            aspect_ratio="16:9", start_image_url=None, credits=amount, now_ms=now, route=["a", "b"],
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        await ledger.freeze(uow, user_id=user_id, video_id=video.id, video_uuid=video.uuid, amount=amount, now_ms=now)
        await uow.commit()


async def _story(db: Database, email: str) -> int:
    """Packages that expire at different times and freezes that span them, a lapse and a refusal."""
    principal, _ = await accounts.create_user(email, db=db)
    user = principal.user_id
    async with db.writing() as uow:
        await ledger.grant(uow, user_id=user, amount=10, kind=PackageType.SUBSCRIPTION, expires_at_ms=T0 + DAY,
                           now_ms=T0)
        await ledger.grant(uow, user_id=user, amount=3, kind=PackageType.GIFT, expires_at_ms=T0 + 1000, now_ms=T0)
        await ledger.grant(uow, user_id=user, amount=7, kind=PackageType.PURCHASE, expires_at_ms=None, now_ms=T0)
        await uow.commit()
    await _generate(db, user, 4, T0)          # all from the gift, then the subscription
    await _generate(db, user, 5, T0 + 10)
    await _generate(db, user, 6, T0 + 2000)   # after the gift lapsed: subscription, then purchase
    with pytest.raises(InsufficientCredits):
        await _generate(db, user, 50, T0 + 3000)
    await _generate(db, user, 2, T0 + 2 * DAY)  # the subscription's rest lapses first
    return user


async def ledger_rows(db: Database, user: int) -> dict[str, Any]:
    """The user's ledger and task rows, without ids and random transaction numbers."""
    async with db.reading() as uow:
        conn = uow.conn
        p, h, a, e, t = credit_packages.c, credit_holds.c, hold_allocations.c, credit_entries.c, tasks.c
        packages = [tuple(r) for r in await conn.execute(
            select(p.id, p.type, p.amount, p.remaining, p.frozen, p.used, p.expired, p.expires_at_ms)
            .where(p.user_id == user).order_by(p.id))]
        ordinal = {row[0]: n for n, row in enumerate(packages)}
        holds = [tuple(r) for r in await conn.execute(
            select(h.amount, h.status, h.created_at_ms).where(h.user_id == user).order_by(h.id))]
        allocations = [(ordinal[r.package_id], r.amount) for r in await conn.execute(
            select(a.package_id, a.amount).join(credit_holds, credit_holds.c.id == a.hold_id)
            .where(h.user_id == user).order_by(h.id, a.package_id))]
        entries = [tuple(r) for r in await conn.execute(
            select(e.type, e.credits, e.balance_after, e.package_id.is_(None), e.hold_id.is_(None),
                   e.video_uuid.is_(None), e.created_at_ms).where(e.user_id == user).order_by(e.id))]
        task_rows = [tuple(r) for r in await conn.execute(
            select(t.route, t.route_index, t.next_run_at_ms, t.attempts, t.created_at_ms, t.traceparent)
            .where(t.video_id.in_(select(credit_holds.c.video_id).where(h.user_id == user))).order_by(t.video_id))]
    return {"packages": [row[1:] for row in packages], "holds": holds, "allocations": allocations,
            "entries": entries, "tasks": task_rows}


async def test_combined_writes_leave_the_rows_one_statement_each_leaves(database_url: str, db: Database) -> None:
    # given the same story told through combined writes and through one statement each
    assert db.combined_writes
    stock = Database(create_engine(database_url), combined_writes=False)
    try:
        combined_user = await _story(db, "combined@example.test")
        stock_user = await _story(stock, "stock@example.test")
        # then the rows are the same, and the ledger audits exact
        combined, expected = await ledger_rows(db, combined_user), await ledger_rows(stock, stock_user)
        assert combined == expected
        assert len(combined["allocations"]) > len(combined["holds"]) == 4  # some freezes span packages
        assert (await audit_ledger(db, combined_user)).frozen == 17
        assert (await audit_ledger(stock, stock_user)).frozen == 17
    finally:
        await stock.dispose()


async def test_a_freeze_of_a_package_that_changed_writes_nothing(db: Database) -> None:
    # given a user with one package, read before someone else froze part of it
    principal, _ = await accounts.create_user("race@example.test", credits=10, db=db)
    user = principal.user_id
    async with db.reading() as uow:
        (stale,) = await LedgerStore(uow).live_packages(user)
    await _generate(db, user, 3, T0)
    # when a freeze is written from the stale read
    async with db.writing(account=user) as uow:
        video = await VideosStore(uow).add_queued(
            uuid=str(uuid.uuid4()), user_id=user, prompt="p", model="sora-2", duration=4, resolution="720p",
            aspect_ratio="16:9", start_image_url=None, credits=2, now_ms=T0, route=["a"])
        with pytest.raises(LedgerRaceError):
            await LedgerStore(uow).record_freeze(
                user_id=user, video_id=video.id, video_uuid=video.uuid, amount=2,
                moves=[(stale, rules.freeze(stale, 2))], allocations=[Allocation(stale.id, 2)],
                balance_after=8, now_ms=T0)
    # then nothing of it was written (the unit of work rolled back), and only the first freeze is there
    audit = await audit_ledger(db, user)
    assert (audit.available, audit.frozen) == (7, 3)


async def test_a_freeze_read_before_another_ledger_write_is_not_written_and_the_locked_way_counts(
        db: Database) -> None:
    # given a user's packages read without the account lock
    principal, _ = await accounts.create_user("moved@example.test", credits=10, db=db)
    user = principal.user_id
    async with db.writing(account=user) as uow:
        store = LedgerStore(uow)
        video = await VideosStore(uow).add_queued(
            uuid=str(uuid.uuid4()), user_id=user, prompt="p", model="sora-2", duration=4, resolution="720p",
            aspect_ratio="16:9", start_image_url=None, credits=4, now_ms=T0, route=["a"])
        seen = await store.peek_live_packages(user)
        assert seen is not None
        version, (package,) = seen
        # when another transaction grants more credits before this one writes its freeze
        async with db.writing() as other:
            await ledger.grant(other, user_id=user, amount=5, kind=PackageType.GIFT, expires_at_ms=None, now_ms=T0)
            await other.commit()
        # then the freeze from the old read writes nothing
        assert await store.record_freeze(
            user_id=user, video_id=video.id, video_uuid=video.uuid, amount=4,
            moves=[(package, rules.freeze(package, 4))], allocations=[Allocation(package.id, 4)], balance_after=6,
            now_ms=T0, seen_version=version) is None
        # and the freeze as the service makes it counts the grant in its balance
        await ledger.freeze(uow, user_id=user, video_id=video.id, video_uuid=video.uuid, amount=4, now_ms=T0)
        await uow.commit()
    async with db.reading() as uow:
        entries, _ = await LedgerStore(uow).history(user, offset=0, limit=5)
    assert [(e.type, e.credits, e.balance_after) for e in entries] == [
        ("VIDEO_CONSUME", -4, 11), ("GIFT", 5, 15), ("GIFT", 10, 10)]
    audit = await audit_ledger(db, user)
    assert (audit.available, audit.frozen) == (11, 4)
    assert await live_videos_of(db, user) == 1  # counted once, by the write that happened


async def live_videos_of(db: Database, user: int) -> int:
    async with db.reading() as uow:
        return int((await uow.conn.execute(select(users.c.live_videos).where(users.c.id == user))).scalar_one())


async def test_generates_racing_from_two_processes_spend_exactly_the_balance(database_url: str, db: Database) -> None:
    # given a user with credits for exactly 7 videos, and a second engine standing for another
    # process (no in-process gate is shared, so the unlocked reads really race)
    other = Database(create_engine(database_url))
    try:
        principal, _ = await accounts.create_user("race2@example.test", credits=7 * price(), db=db)
        deps, other_deps = make_deps(db), make_deps(other)

        async def attempt(n: int) -> bool:
            try:
                await generate_video(REQUEST, principal, deps=deps if n % 2 else other_deps)
            except InsufficientCredits:
                return False
            return True

        async def top_up() -> None:  # ledger writes that move the version under the racing reads
            async with other.writing() as uow:
                await ledger.grant(uow, user_id=principal.user_id, amount=price(), kind=PackageType.GIFT,
                                   expires_at_ms=None, now_ms=T0)
                await uow.commit()

        # when 20 generates race with 3 grants of one video each
        results = await asyncio.gather(*(attempt(n) for n in range(20)), *(top_up() for _ in range(3)))
        # then exactly 10 are accepted, and the ledger and the live count are exact
        assert sum(1 for r in results[:20] if r) == 10
        audit = await audit_ledger(db, principal.user_id)
        assert (audit.available, audit.frozen) == (0, 10 * price())
        assert await live_videos_of(db, principal.user_id) == 10
    finally:
        await other.dispose()
