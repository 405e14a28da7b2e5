"""SQL for the credit ledger. The rules live in domain/ledger.py; this only reads and writes rows."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, insert, or_, select, text, update

from kensa_gql.adapters.db.tables import (
    credit_accounts,
    credit_entries,
    credit_holds,
    credit_packages,
    hold_allocations,
)
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.domain.ledger import Allocation, Balance, Entry, EntryType, HoldStatus, Package, PackageType


class LedgerRaceError(RuntimeError):
    """A conditional ledger write matched no row: the account lock was not held. A bug, never input."""


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    user_id: int
    video_id: int
    amount: int
    status: HoldStatus


# A freeze's writes on PostgreSQL in one statement (LedgerStore.record_freeze). It takes the account
# lock itself (the version bump every ledger operation makes), and with ``seen_version`` writes
# only if the account is still at the version the packages were read at (peek_live_packages):
# nothing of the ledger changed since, so the freeze computed from that read is the one a locked
# read would give. Then each allocated package moves from remaining to frozen (a compare-and-set
# on all four buckets, as save_package does), the hold and its allocations are inserted, the
# FREEZE entry, and the unit of work's pending live-video count for the user: that is a users
# row lock, taken after the account's, and this is the transaction's last statement (see
# UnitOfWork._write_live_video_counts). Every write waits for the account CTE (EXISTS), so none
# happens, and no row comes back, when the version moved.
# The two fragments the one-statement generate (express.py) shares with it, written once and
# spelled for each driver: SQLAlchemy's named ``CAST(:name AS T)`` here, asyncpg's ``$n::t`` there.
PACKAGE_ARRAYS = ("ids", "old_remaining", "old_frozen", "old_used", "old_expired", "remaining", "frozen", "used",
                  "expired", "allocated")


def moved_packages(arrays: Sequence[str]) -> str:
    """The CTE body moving a freeze's packages: ``arrays`` are its ten bigint[] parameters, in
    PACKAGE_ARRAYS order. A compare-and-set on all four buckets of each package (as save_package
    does), only once the ``account`` CTE has bumped the version; ``RETURNING`` what moved."""
    assert len(arrays) == len(PACKAGE_ARRAYS)
    return f"""UPDATE credit_packages AS p
    SET remaining = n.remaining, frozen = n.frozen, used = n.used, expired = n.expired
    FROM unnest({", ".join(arrays)})
         AS n({", ".join(("id", *PACKAGE_ARRAYS[1:]))})
    WHERE p.id = n.id AND p.remaining = n.old_remaining AND p.frozen = n.old_frozen
      AND p.used = n.old_used AND p.expired = n.old_expired AND EXISTS (SELECT FROM account)
    RETURNING p.id, n.allocated"""  # noqa: S608 - our own text; the values are bound parameters


def live_packages(user_id: str) -> str:
    """An account's version and its live packages, read without the lock: ``user_id`` its parameter."""
    return f"""SELECT a.version, p.id, p.amount, p.remaining, p.frozen, p.used, p.expired, p.expires_at_ms
FROM credit_accounts AS a
LEFT JOIN credit_packages AS p ON p.user_id = a.user_id AND (p.remaining > 0 OR p.frozen > 0)
WHERE a.user_id = {user_id}"""  # noqa: S608 - our own text; the value is a bound parameter


_FREEZE_PG = text(f"""
WITH account AS (
    UPDATE credit_accounts SET version = version + 1
    WHERE user_id = CAST(:user_id AS BIGINT)
      AND (CAST(:seen_version AS BIGINT) IS NULL OR version = CAST(:seen_version AS BIGINT))
    RETURNING user_id
), moved AS (
    {moved_packages([f"CAST(:{name} AS BIGINT[])" for name in PACKAGE_ARRAYS])}
), hold AS (
    INSERT INTO credit_holds (user_id, video_id, amount, status, created_at_ms)
    SELECT account.user_id, CAST(:video_id AS BIGINT), CAST(:amount AS BIGINT), CAST(:status AS VARCHAR),
           CAST(:now_ms AS BIGINT)
    FROM account
    RETURNING id
), allocated AS (
    INSERT INTO hold_allocations (hold_id, package_id, amount)
    SELECT hold.id, moved.id, moved.allocated FROM hold, moved
), entry AS (
    INSERT INTO credit_entries (trans_no, user_id, type, credits, balance_after, video_uuid, hold_id, created_at_ms)
    SELECT CAST(:trans_no AS VARCHAR), CAST(:user_id AS BIGINT), CAST(:entry_type AS VARCHAR),
           CAST(:credits AS BIGINT), CAST(:balance_after AS BIGINT), CAST(:video_uuid AS VARCHAR), hold.id,
           CAST(:now_ms AS BIGINT)
    FROM hold
), counted AS (
    UPDATE users SET live_videos = live_videos + CAST(:live_change AS BIGINT)
    WHERE id = CAST(:user_id AS BIGINT) AND CAST(:live_change AS BIGINT) <> 0 AND EXISTS (SELECT FROM account)
)
SELECT hold.id, (SELECT count(*) FROM moved) FROM hold
""")  # noqa: S608 - our own text
# The account's version and its live packages, read without the lock (see _FREEZE_PG).
_PEEK_PG = text(live_packages("CAST(:user_id AS BIGINT)"))


def _trans_no(now_ms: int) -> str:
    return f"CT{now_ms}{secrets.token_hex(5).upper()}"


def _package(row: object) -> Package:
    r = row._mapping  # type: ignore[attr-defined]
    return Package(id=r["id"], amount=r["amount"], remaining=r["remaining"], frozen=r["frozen"],
                   used=r["used"], expired=r["expired"], expires_at_ms=r["expires_at_ms"])


class LedgerStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def open_account(self, user_id: int) -> None:
        await self._uow.conn.execute(insert(credit_accounts).values(user_id=user_id, version=0))

    async def lock_account(self, user_id: int) -> bool:
        """Serialise ledger work for one user until the transaction ends; False if no account.

        The lock is a version bump: on SQLite the write transaction already holds the database
        lock (BEGIN IMMEDIATE); on PostgreSQL the UPDATE locks the row, and the version tells a
        freeze read without the lock whether anything changed since (record_freeze).
        """
        result = await self._uow.conn.execute(update(credit_accounts).where(credit_accounts.c.user_id == user_id)
                                              .values(version=credit_accounts.c.version + 1))
        return result.rowcount == 1

    async def peek_live_packages(self, user_id: int) -> tuple[int, list[Package]] | None:
        """The account's version and live packages, read without its lock; None if no account."""
        rows = (await self._uow.conn.execute(_PEEK_PG, {"user_id": user_id})).all()
        if not rows:
            return None
        return rows[0][0], [Package(id=r[1], amount=r[2], remaining=r[3], frozen=r[4], used=r[5], expired=r[6],
                                    expires_at_ms=r[7]) for r in rows if r[1] is not None]

    async def live_packages(self, user_id: int) -> list[Package]:
        rows = await self._uow.conn.execute(
            select(credit_packages).where(credit_packages.c.user_id == user_id,
                                          or_(credit_packages.c.remaining > 0, credit_packages.c.frozen > 0)))
        return [_package(r) for r in rows]

    async def packages(self, ids: list[int]) -> dict[int, Package]:
        rows = await self._uow.conn.execute(select(credit_packages).where(credit_packages.c.id.in_(ids)))
        return {r.id: _package(r) for r in rows}

    async def all_packages(self, user_id: int) -> list[Package]:
        rows = await self._uow.conn.execute(select(credit_packages).where(credit_packages.c.user_id == user_id))
        return [_package(r) for r in rows]

    async def add_package(self, user_id: int, kind: PackageType, amount: int, expires_at_ms: int | None,
                          now_ms: int) -> int:
        result = await self._uow.conn.execute(insert(credit_packages).values(
            user_id=user_id, type=kind.value, amount=amount, remaining=amount, frozen=0, used=0, expired=0,
            expires_at_ms=expires_at_ms, created_at_ms=now_ms).returning(credit_packages.c.id))
        return int(result.scalar_one())

    async def save_package(self, old: Package, new: Package) -> None:
        """Write a package's new buckets, only if nobody changed them since we read them."""
        new.check()
        c = credit_packages.c
        result = await self._uow.conn.execute(
            update(credit_packages)
            .where(c.id == old.id, c.remaining == old.remaining, c.frozen == old.frozen,
                   c.used == old.used, c.expired == old.expired)
            .values(remaining=new.remaining, frozen=new.frozen, used=new.used, expired=new.expired))
        if result.rowcount != 1:
            raise LedgerRaceError(f"package {old.id} changed under us")

    async def available(self, user_id: int, now_ms: int) -> int:
        c = credit_packages.c
        result = await self._uow.conn.execute(
            select(func.coalesce(func.sum(c.remaining), 0)).where(
                c.user_id == user_id, c.remaining > 0,
                or_(c.expires_at_ms.is_(None), c.expires_at_ms > now_ms)))
        return int(result.scalar_one())

    async def frozen_total(self) -> int:
        """Credits held by every pending hold: what videos in flight have frozen, over all users."""
        total = (await self._uow.conn.execute(select(func.coalesce(func.sum(credit_holds.c.amount), 0))
                                              .where(credit_holds.c.status == HoldStatus.PENDING.value))).scalar_one()
        return int(total)

    async def balance(self, user_id: int, now_ms: int) -> Balance:
        c = credit_packages.c
        live = or_(c.expires_at_ms.is_(None), c.expires_at_ms > now_ms)
        row = (await self._uow.conn.execute(select(
            func.coalesce(func.sum(c.amount), 0),
            func.coalesce(func.sum(c.frozen), 0),
            func.coalesce(func.sum(c.used), 0),
            func.coalesce(func.sum(c.expired), 0),
            func.coalesce(func.sum(c.remaining).filter(live), 0),
            func.coalesce(func.sum(c.remaining).filter(~live), 0),
        ).where(c.user_id == user_id))).one()
        total, frozen, used, expired, available, lapsed = (int(v) for v in row)
        return Balance(available=available, frozen=frozen, used=used, expired=expired + lapsed, total=total)

    async def add_entry(self, *, user_id: int, kind: EntryType, credits: int, balance_after: int, now_ms: int,
                        video_uuid: str | None = None, package_id: int | None = None,
                        hold_id: int | None = None) -> None:
        await self._uow.conn.execute(insert(credit_entries).values(
            trans_no=_trans_no(now_ms), user_id=user_id, type=kind.value,
            credits=credits, balance_after=balance_after, video_uuid=video_uuid, package_id=package_id,
            hold_id=hold_id, created_at_ms=now_ms))

    async def add_hold(self, *, user_id: int, video_id: int, amount: int, allocations: list[Allocation],
                       now_ms: int) -> int:
        conn = self._uow.conn
        result = await conn.execute(insert(credit_holds).values(
            user_id=user_id, video_id=video_id, amount=amount, status=HoldStatus.PENDING.value,
            created_at_ms=now_ms).returning(credit_holds.c.id))
        hold_id = int(result.scalar_one())
        await conn.execute(insert(hold_allocations), [
            {"hold_id": hold_id, "package_id": a.package_id, "amount": a.amount} for a in allocations])
        return hold_id

    async def record_freeze(self, *, user_id: int, video_id: int, video_uuid: str, amount: int,
                            moves: list[tuple[Package, Package]], allocations: list[Allocation],
                            balance_after: int, now_ms: int, seen_version: int | None = None) -> int | None:
        """A freeze's writes: each package's move (old, new), the hold with its allocations, the
        FREEZE entry; the hold's id. One statement on PostgreSQL (combined writes), else one each.

        ``seen_version`` (combined writes only): the packages were read without the account lock
        at that version; this takes the lock and writes only if the version is unchanged, else
        writes nothing and returns None. Without it the caller holds the account lock already.
        """
        if not self._uow.combined_writes:
            assert seen_version is None, "an unlocked read is only written through combined writes"
            for old, new in moves:
                await self.save_package(old, new)
            hold_id = await self.add_hold(user_id=user_id, video_id=video_id, amount=amount,
                                          allocations=allocations, now_ms=now_ms)
            await self.add_entry(user_id=user_id, kind=EntryType.FREEZE, credits=-amount, balance_after=balance_after,
                                 now_ms=now_ms, video_uuid=video_uuid, hold_id=hold_id)
            return hold_id
        for _, new in moves:
            new.check()
        allocated = {a.package_id: a.amount for a in allocations}
        assert sorted(allocated) == sorted(old.id for old, _ in moves), "one move per allocation"
        live_change = self._uow.take_live_video_change(user_id)
        row = (await self._uow.conn.execute(_FREEZE_PG, {
            "seen_version": seen_version, "ids": [old.id for old, _ in moves],
            "old_remaining": [old.remaining for old, _ in moves], "old_frozen": [old.frozen for old, _ in moves],
            "old_used": [old.used for old, _ in moves], "old_expired": [old.expired for old, _ in moves],
            "remaining": [new.remaining for _, new in moves], "frozen": [new.frozen for _, new in moves],
            "used": [new.used for _, new in moves], "expired": [new.expired for _, new in moves],
            "allocated": [allocated[old.id] for old, _ in moves],
            "user_id": user_id, "video_id": video_id, "amount": amount, "status": HoldStatus.PENDING.value,
            "now_ms": now_ms, "trans_no": _trans_no(now_ms), "entry_type": EntryType.FREEZE.value,
            "credits": -amount, "balance_after": balance_after, "video_uuid": video_uuid,
            "live_change": live_change})).first()
        if row is None:
            if seen_version is None:
                raise LedgerRaceError(f"user {user_id} has no account to freeze from")
            self._uow.count_live_videos(user_id, live_change)  # not written: still due at commit
            return None
        if row[1] != len(moves):
            raise LedgerRaceError(f"packages {[old.id for old, _ in moves]} changed under us")
        return int(row[0])

    async def hold_for_video(self, video_id: int) -> Hold | None:
        row = (await self._uow.conn.execute(
            select(credit_holds).where(credit_holds.c.video_id == video_id))).first()
        if row is None:
            return None
        return Hold(id=row.id, user_id=row.user_id, video_id=row.video_id, amount=row.amount,
                    status=HoldStatus(row.status))

    async def resolve_hold(self, hold_id: int, status: HoldStatus, now_ms: int) -> bool:
        """PENDING -> POSTED | VOIDED, exactly once: False when it was already resolved."""
        result = await self._uow.conn.execute(
            update(credit_holds)
            .where(and_(credit_holds.c.id == hold_id, credit_holds.c.status == HoldStatus.PENDING.value))
            .values(status=status.value, resolved_at_ms=now_ms))
        return result.rowcount == 1

    async def allocations(self, hold_id: int) -> list[Allocation]:
        rows = await self._uow.conn.execute(
            select(hold_allocations.c.package_id, hold_allocations.c.amount)
            .where(hold_allocations.c.hold_id == hold_id).order_by(hold_allocations.c.package_id))
        return [Allocation(r.package_id, r.amount) for r in rows]

    async def history(self, user_id: int, *, offset: int, limit: int) -> tuple[list[Entry], int]:
        c = credit_entries.c
        conn = self._uow.conn
        total = int((await conn.execute(select(func.count()).where(c.user_id == user_id))).scalar_one())
        rows = await conn.execute(select(c.id, c.trans_no, c.type, c.credits, c.balance_after, c.video_uuid,
                                         c.created_at_ms)
                                  .where(c.user_id == user_id).order_by(c.id.desc()).offset(offset).limit(limit))
        return [Entry(id=r.id, trans_no=r.trans_no, type=r.type, credits=r.credits,
                      balance_after=r.balance_after, video_uuid=r.video_uuid, created_at_ms=r.created_at_ms)
                for r in rows], total
