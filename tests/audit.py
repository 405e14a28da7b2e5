"""A ledger audit for tests: the invariants an accountant would check after any run, however chaotic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import credit_entries, credit_holds, credit_packages, tasks, videos
from kensa_gql.domain.ledger import EntryType, HoldStatus


@dataclass(frozen=True)
class LedgerAudit:
    available: int
    frozen: int
    used: int
    statuses: Counter[str]
    holds: Counter[str]
    tasks_left: int


async def audit_ledger(db: Database, user_id: int) -> LedgerAudit:
    """Check one user's ledger is exact and return its totals; AssertionError names what is off."""
    async with db.reading() as uow:
        conn = uow.conn
        p = credit_packages.c
        available, frozen, used = (int(v) for v in (await conn.execute(
            select(func.coalesce(func.sum(p.remaining), 0), func.coalesce(func.sum(p.frozen), 0),
                   func.coalesce(func.sum(p.used), 0)).where(p.user_id == user_id))).one())
        e = credit_entries.c
        entries = (await conn.execute(select(e.id, e.type, e.credits, e.balance_after, e.hold_id)
                                      .where(e.user_id == user_id).order_by(e.id))).all()
        h = credit_holds.c
        holds = (await conn.execute(
            select(h.id, h.amount, h.status, h.video_id).where(h.user_id == user_id))).all()
        v = videos.c
        statuses = Counter(r[0] for r in await conn.execute(select(v.status).where(v.user_id == user_id)))
        tasks_left = int((await conn.execute(
            select(func.count()).select_from(tasks.join(videos, tasks.c.video_id == videos.c.id))
            .where(v.user_id == user_id))).scalar_one())

    # the entries add up to the balance, and each entry's running balance is right
    assert sum(r.credits for r in entries) == available, (entries, available)
    running = 0
    for r in entries:
        running += r.credits
        assert r.balance_after == running, f"entry {r.id} says {r.balance_after}, the sum is {running}"
    # every hold has one freeze, and exactly one settle or release once it is resolved
    by_hold: dict[int, Counter[str]] = {}
    for r in entries:
        if r.hold_id is not None:
            by_hold.setdefault(r.hold_id, Counter())[r.type] += 1
    for hold in holds:
        kinds = by_hold.get(hold.id, Counter())
        assert kinds[EntryType.FREEZE] == 1, f"hold {hold.id}: {dict(kinds)}"
        resolutions = kinds[EntryType.SETTLE] + kinds[EntryType.RELEASE]
        expected = 0 if hold.status == HoldStatus.PENDING else 1
        assert resolutions == expected, f"hold {hold.id} is {hold.status} with entries {dict(kinds)}"
    assert frozen == sum(h.amount for h in holds if h.status == HoldStatus.PENDING)
    assert used == sum(h.amount for h in holds if h.status == HoldStatus.POSTED)
    return LedgerAudit(available=available, frozen=frozen, used=used, statuses=statuses,
                       holds=Counter(h.status for h in holds), tasks_left=tasks_left)
