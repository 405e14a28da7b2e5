"""Ledger operations inside a caller's unit of work: grant, freeze, settle, release, expire.

Each function expects to run in a write unit of work and locks the user's account before it
writes (a freeze on PostgreSQL may read first and check, see ``freeze``), so operations on one
user's credits never interleave. The arithmetic is domain/ledger.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

from kensa_gql.adapters.db.ledger_store import LedgerStore
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.domain import ledger
from kensa_gql.domain.errors import BadUserInput, NotFound
from kensa_gql.domain.ledger import EntryType, HoldStatus, PackageType


async def _lock_and_sweep(store: LedgerStore, user_id: int, now_ms: int) -> int:
    """Lock the account, expire what is due, and return the available balance."""
    return (await _lock_sweep_and_read(store, user_id, now_ms))[0]


async def _lock_sweep_and_read(store: LedgerStore, user_id: int, now_ms: int) -> tuple[int, list[ledger.Package]]:
    """Lock the account, expire what is due; the available balance and the live packages as they
    now are in the database (under the account lock nothing else changes them)."""
    if not await store.lock_account(user_id):
        raise NotFound("user")
    packages = await store.live_packages(user_id)
    # The last entry's balance still counted these credits, so walk the balance down with them.
    running = sum(p.remaining for p in packages)
    swept = {}
    for p in sorted(packages, key=ledger.expiry_order):
        if p.remaining > 0 and p.is_expired(now_ms):
            running -= p.remaining
            swept[p.id] = ledger.expire(p)
            await store.save_package(p, swept[p.id])
            await store.add_entry(user_id=user_id, kind=EntryType.EXPIRE, credits=-p.remaining,
                                  balance_after=running, now_ms=now_ms, package_id=p.id)
    live = [swept.get(p.id, p) for p in packages]
    return running, [p for p in live if p.remaining > 0 or p.frozen > 0]


async def grant(uow: UnitOfWork, *, user_id: int, amount: int, kind: PackageType,
                expires_at_ms: int | None, now_ms: int) -> int:
    ledger.validate_grant(amount)
    if expires_at_ms is not None and expires_at_ms <= now_ms:
        raise BadUserInput("expiry must be in the future", field="expiresAt")
    store = LedgerStore(uow)
    available = await _lock_and_sweep(store, user_id, now_ms)
    # Under the account lock, so two grants cannot both fit in the same room.
    ledger.validate_grant(amount, total=(await store.balance(user_id, now_ms)).total)
    package_id = await store.add_package(user_id, kind, amount, expires_at_ms, now_ms)
    await store.add_entry(user_id=user_id, kind=ledger.GRANT_ENTRY[kind], credits=amount,
                          balance_after=available + amount, now_ms=now_ms, package_id=package_id)
    return package_id


async def freeze(uow: UnitOfWork, *, user_id: int, video_id: int, video_uuid: str, amount: int,
                 now_ms: int) -> int:
    """Reserve ``amount`` for a video; raises InsufficientCredits and writes nothing when short.

    With combined writes (PostgreSQL) it first tries without waiting for the account lock: the
    packages read unlocked, the freeze written in one statement that takes the lock and checks
    nothing changed since (LedgerStore.record_freeze). If something did, if anything is due to
    expire, or if the read looks short, it goes the locked way, whose answer is the one that counts.
    """
    store = LedgerStore(uow)
    if uow.combined_writes:
        seen = await store.peek_live_packages(user_id)
        if seen is not None and unlocked_read_usable(seen[1], amount, now_ms):
            version, packages = seen
            hold_id = await _record_freeze(store, user_id=user_id, video_id=video_id, video_uuid=video_uuid,
                                           amount=amount, available=sum(p.remaining for p in packages),
                                           packages=packages, now_ms=now_ms, seen_version=version)
            if hold_id is not None:
                return hold_id
    # The packages as the sweep left them: reading them again would be one more round trip each freeze.
    available, packages = await _lock_sweep_and_read(store, user_id, now_ms)
    hold_id = await _record_freeze(store, user_id=user_id, video_id=video_id, video_uuid=video_uuid, amount=amount,
                                   available=available, packages=packages, now_ms=now_ms)
    assert hold_id is not None, "written under the account lock"
    return hold_id


async def _record_freeze(store: LedgerStore, *, user_id: int, video_id: int, video_uuid: str, amount: int,
                         available: int, packages: list[ledger.Package], now_ms: int,
                         seen_version: int | None = None) -> int | None:
    moves, allocations = plan_freeze(packages, amount, now_ms)
    return await store.record_freeze(user_id=user_id, video_id=video_id, video_uuid=video_uuid, amount=amount,
                                     moves=moves, allocations=allocations, balance_after=available - amount,
                                     now_ms=now_ms, seen_version=seen_version)


def plan_freeze(packages: Sequence[ledger.Package], amount: int,
                now_ms: int) -> tuple[list[tuple[ledger.Package, ledger.Package]], list[ledger.Allocation]]:
    """Which packages a freeze takes from, as (old, new) pairs and allocations; InsufficientCredits if short."""
    allocations = ledger.allocate(packages, amount, now_ms)
    by_id = {p.id: p for p in packages}
    return [(by_id[a.package_id], ledger.freeze(by_id[a.package_id], a.amount)) for a in allocations], allocations


def unlocked_read_usable(packages: Sequence[ledger.Package], amount: int, now_ms: int) -> bool:
    """Whether packages read without the account lock may be frozen from: nothing is due to expire
    (a sweep writes under the lock) and they cover ``amount`` (a refusal is decided under the lock)."""
    return (not any(p.remaining > 0 and p.is_expired(now_ms) for p in packages)
            and sum(p.remaining for p in packages) >= amount)


async def settle(uow: UnitOfWork, *, video_id: int, video_uuid: str, now_ms: int) -> bool:
    """Frozen -> used. Returns False (and changes nothing) if the hold was already resolved."""
    return await _resolve(uow, video_id=video_id, video_uuid=video_uuid, now_ms=now_ms, to=HoldStatus.POSTED)


async def release(uow: UnitOfWork, *, video_id: int, video_uuid: str, now_ms: int) -> bool:
    """Frozen -> available again. Returns False (and changes nothing) if already resolved."""
    return await _resolve(uow, video_id=video_id, video_uuid=video_uuid, now_ms=now_ms, to=HoldStatus.VOIDED)


async def _resolve(uow: UnitOfWork, *, video_id: int, video_uuid: str, now_ms: int, to: HoldStatus) -> bool:
    store = LedgerStore(uow)
    hold = await store.hold_for_video(video_id)
    if hold is None or hold.status is not HoldStatus.PENDING:
        return False
    available = await _lock_and_sweep(store, hold.user_id, now_ms)
    if not await store.resolve_hold(hold.id, to, now_ms):
        return False
    allocations = await store.allocations(hold.id)
    packages = await store.packages([a.package_id for a in allocations])
    lapsed: list[tuple[int, int]] = []
    for a in allocations:
        old = packages[a.package_id]
        if to is HoldStatus.POSTED:
            await store.save_package(old, ledger.settle(old, a.amount))
        else:
            new, expired_now = ledger.release(old, a.amount, now_ms)
            await store.save_package(old, new)
            if expired_now:
                lapsed.append((old.id, expired_now))
    if to is HoldStatus.POSTED:
        await store.add_entry(user_id=hold.user_id, kind=EntryType.SETTLE, credits=0, balance_after=available,
                              now_ms=now_ms, video_uuid=video_uuid, hold_id=hold.id)
        return True
    returned = hold.amount - sum(n for _, n in lapsed)
    await store.add_entry(user_id=hold.user_id, kind=EntryType.RELEASE, credits=hold.amount,
                          balance_after=available + hold.amount, now_ms=now_ms, video_uuid=video_uuid,
                          hold_id=hold.id)
    running = available + hold.amount
    for package_id, amount in lapsed:
        running -= amount
        await store.add_entry(user_id=hold.user_id, kind=EntryType.EXPIRE, credits=-amount,
                              balance_after=running, now_ms=now_ms, package_id=package_id)
    assert running == available + returned
    return True
