"""Random sequences of ledger operations on a real database keep every invariant."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.ledger_store import LedgerStore
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.adapters.db.tables import credit_entries, credit_packages
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.errors import InsufficientCredits
from kensa_gql.domain.ledger import PackageType
from kensa_gql.services import accounts, ledger

T0 = 1_900_000_000_000

grant_op = st.tuples(st.just("grant"), st.integers(1, 50), st.one_of(st.none(), st.integers(1, 5_000)))
freeze_op = st.tuples(st.just("freeze"), st.integers(1, 40), st.none())
settle_op = st.tuples(st.just("settle"), st.integers(0, 30), st.none())
release_op = st.tuples(st.just("release"), st.integers(0, 30), st.none())
tick_op = st.tuples(st.just("tick"), st.integers(1, 3_000), st.none())
operations = st.lists(st.one_of(grant_op, freeze_op, settle_op, release_op, tick_op), min_size=1, max_size=30)


@dataclass
class Model:
    granted: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # video id -> amount
    settled: int = 0
    resolved: set[int] = field(default_factory=set)
    holds: list[int] = field(default_factory=list)


async def _check(db: Database, user_id: int, model: Model, now: int, *, after_write: bool) -> None:
    async with db.reading() as uow:
        balance = await LedgerStore(uow).balance(user_id, now)
        entries = (await uow.conn.execute(
            select(credit_entries.c.credits, credit_entries.c.balance_after, credit_entries.c.type,
                   credit_entries.c.hold_id)
            .where(credit_entries.c.user_id == user_id).order_by(credit_entries.c.id))).all()
        negative = (await uow.conn.execute(select(func.count()).select_from(credit_packages).where(
            credit_packages.c.user_id == user_id,
            (credit_packages.c.remaining < 0) | (credit_packages.c.frozen < 0)
            | (credit_packages.c.used < 0) | (credit_packages.c.expired < 0)))).scalar_one()
    assert negative == 0
    assert balance.total == model.granted
    assert balance.frozen == sum(model.pending.values())
    assert balance.used == model.settled
    assert balance.total == balance.available + balance.frozen + balance.used + balance.expired
    assert min(balance.available, balance.frozen, balance.used, balance.expired) >= 0
    running = 0
    for credits, after, _, _ in entries:
        running += credits
        assert after == running, "balanceAfter must follow the entries"
    if after_write and entries:
        assert entries[-1][1] == balance.available
    per_hold: dict[int, list[str]] = {}
    for _, _, kind, hold_id in entries:
        if hold_id is not None:
            per_hold.setdefault(hold_id, []).append(kind)
    for kinds in per_hold.values():
        assert kinds[0] == "VIDEO_CONSUME" and kinds.count("VIDEO_CONSUME") == 1
        assert kinds.count("VIDEO_SETTLE") + kinds.count("VIDEO_REFUND") <= 1


async def _run(url: str, ops: list[tuple[str, int, int | None]]) -> None:
    db = Database(create_engine(url))
    try:
        principal, _ = await accounts.create_user(f"{uuid.uuid4().hex}@prop.test", db=db)
        user_id, model, now = principal.user_id, Model(), T0
        for kind, n, extra in ops:
            wrote = True
            if kind == "tick":
                now += n
                wrote = False
            elif kind == "grant":
                async with db.writing() as uow:
                    await ledger.grant(uow, user_id=user_id, amount=n, kind=PackageType.PURCHASE,
                                       expires_at_ms=None if extra is None else now + extra, now_ms=now)
                    await uow.commit()
                model.granted += n
            elif kind == "freeze":
                async with db.reading() as uow:
                    before = await LedgerStore(uow).balance(user_id, now)
                try:
                    async with db.writing() as uow:
                        video = await VideosStore(uow).add(
                            uuid=str(uuid.uuid4()), user_id=user_id, prompt="p", model="sora-2", duration=4,
                            resolution="720p", aspect_ratio="16:9", start_image_url=None, credits=n, now_ms=now)
                        await ledger.freeze(uow, user_id=user_id, video_id=video.id, video_uuid=video.uuid,
                                            amount=n, now_ms=now)
                        await uow.commit()
                    assert before.available >= n
                    model.pending[video.id] = n
                    model.holds.append(video.id)
                except InsufficientCredits:
                    assert before.available < n
                    wrote = False
            elif model.holds:
                video_id = model.holds[n % len(model.holds)]
                async with db.writing() as uow:
                    resolve = ledger.settle if kind == "settle" else ledger.release
                    changed = await resolve(uow, video_id=video_id, video_uuid="v", now_ms=now)
                    await uow.commit()
                assert changed == (video_id not in model.resolved), "each hold resolves exactly once"
                if changed:
                    amount = model.pending.pop(video_id)
                    model.resolved.add(video_id)
                    if kind == "settle":
                        model.settled += amount
                wrote = changed
            else:
                wrote = False
            await _check(db, user_id, model, now, after_write=wrote)
    finally:
        await db.dispose()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)  # SQLite starts empty; PostgreSQL's template is migrated already (a no-op)
    return database_url


# Runs on SQLite and on PostgreSQL (the database_url fixture); each example is a new user.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_random_ledger_histories_keep_every_invariant(migrated_url: str, ops: list[tuple[str, int, int | None]]
                                                       ) -> None:
    asyncio.run(_run(migrated_url, ops))
