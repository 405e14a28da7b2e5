"""Claiming runner tasks: disjoint between concurrent claimers, leased, found through the index.

These run on SQLite and PostgreSQL (the ``db`` fixture); the lock-skipping and plan checks read
the SQL the store really sends, captured from the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import tasks, users, videos
from kensa_gql.adapters.db.videos_store import VideosStore

NOW = 1_000_000
LEASE_MS = 30_000


async def seed(db: Database, *, due: int, later: int = 0) -> None:
    """``due`` tasks ready at NOW and ``later`` tasks not due for an hour."""
    async with db.writing() as uow:
        await uow.conn.execute(insert(users).values(id=1, email="owner@example.test", created_at_ms=0))
        total = due + later
        await uow.conn.execute(insert(videos), [
            {"id": i, "uuid": f"00000000-0000-4000-8000-{i:012d}", "user_id": 1, "prompt": "p",
             "model": "sora-2", "status": "PENDING", "progress": 0, "duration": 4, "aspect_ratio": "16:9",
             "credits_used": 1, "created_at_ms": 0} for i in range(1, total + 1)])
        await uow.conn.execute(insert(tasks), [
            {"video_id": i, "route": json.dumps(["local"]), "route_index": 0, "attempts": 0,
             "created_at_ms": 0, "next_run_at_ms": NOW - i if i <= due else NOW + 3_600_000 + i}
            for i in range(1, total + 1)])
        await uow.conn.execute(text("ANALYZE"))
        await uow.commit()


async def claim(db: Database, owner: str, *, limit: int = 16, now: int = NOW) -> list[int]:
    async with db.writing() as uow:
        claimed = await VideosStore(uow).claim_due(owner, now_ms=now, lease_ms=LEASE_MS, limit=limit)
        await uow.commit()
    return [t.video_id for t in claimed]


@pytest.fixture
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the engine sends, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_concurrent_claimers_never_share_a_task(db: Database) -> None:
    # given 120 due tasks
    await seed(db, due=120)
    # when eight runners claim in small batches at the same time, until nothing is left
    async def drain(owner: str) -> list[int]:
        mine: list[int] = []
        while batch := await claim(db, owner, limit=5):
            mine += batch
        return mine

    results = await asyncio.gather(*(drain(f"runner-{n}") for n in range(8)))
    # then every task was claimed by exactly one of them
    claimed = [vid for batch in results for vid in batch]
    assert sorted(claimed) == list(range(1, 121))
    assert sum(1 for r in results if r) >= 2, "the claims were not actually concurrent"


async def test_a_leased_task_is_not_claimed_again_until_its_lease_runs_out(db: Database) -> None:
    await seed(db, due=3)
    assert sorted(await claim(db, "first")) == [1, 2, 3]
    assert await claim(db, "second") == []
    assert await claim(db, "second", now=NOW + LEASE_MS - 1) == []
    # the first runner died: its lease expires and another runner takes all three over
    assert sorted(await claim(db, "second", now=NOW + LEASE_MS + 1)) == [1, 2, 3]
    async with db.writing() as uow:
        store = VideosStore(uow)
        # the old holder is fenced off: its writes no longer match
        assert not await store.update_task(1, "first", next_run_at_ms=NOW)
        assert await store.update_task(1, "second", next_run_at_ms=NOW)
        task = await store.task_for(1, "second")
        await uow.commit()
    assert task is not None and task.attempts == 2


async def test_claims_take_the_earliest_due_tasks_first_and_respect_the_batch(db: Database) -> None:
    await seed(db, due=10, later=5)
    # seeded with next_run_at_ms = NOW - id: the highest ids are the most overdue
    assert sorted(await claim(db, "r", limit=4)) == [7, 8, 9, 10]
    assert sorted(await claim(db, "r", limit=100)) == [1, 2, 3, 4, 5, 6]


# PostgreSQL only: SQLite serialises writers with BEGIN IMMEDIATE, so there is no row lock to skip.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_claims_skip_rows_locked_by_another_transaction(
        db: Database, statements: list[tuple[str, Any]]) -> None:
    await seed(db, due=4)
    async with db.writing() as blocker:
        # another worker's transaction holds task 4 (the most overdue) and has not committed
        await blocker.conn.execute(text("SELECT 1 FROM tasks WHERE video_id = 4 FOR UPDATE"))
        claimed = await asyncio.wait_for(claim(db, "r"), timeout=5)
    assert sorted(claimed) == [1, 2, 3]
    sent = [s for s, _ in statements if s.lstrip().upper().startswith("UPDATE TASKS")]
    assert sent and "FOR UPDATE OF tasks SKIP LOCKED" in sent[-1]


async def test_due_tasks_are_found_through_the_next_run_index(
        db: Database, statements: list[tuple[str, Any]]) -> None:
    # given a large table where most tasks are not due
    await seed(db, due=50, later=4000)
    statements.clear()
    assert len(await claim(db, "r")) == 16
    sql, params = next((s, p) for s, p in statements if s.lstrip().upper().startswith("UPDATE TASKS"))
    # when the planner is asked about the exact statement the store sent
    async with db.reading() as uow:
        if db.engine.dialect.name == "postgresql":
            plan = "\n".join(r[0] for r in await uow.conn.exec_driver_sql(f"EXPLAIN {sql}", params))
            # then it reaches due rows through the index, locks them, and never scans the table
            assert "ix_tasks_next_run_at_ms" in plan, plan
            assert "LockRows" in plan, plan
            assert "Seq Scan on tasks" not in plan, plan
        else:
            rows = await uow.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "USING INDEX ix_tasks_next_run_at_ms" in plan, plan
            assert "SCAN tasks" not in plan.replace("SCAN tasks USING", ""), plan


async def seed_users(db: Database, queued: dict[int, int]) -> dict[int, list[int]]:
    """``queued[user]`` waiting tasks per user, due at NOW in id order (user 1's first): their ids."""
    ids: dict[int, list[int]] = {}
    next_id = 1
    async with db.writing() as uow:
        for user in queued:
            await uow.conn.execute(insert(users).values(id=user, email=f"u{user}@example.test", created_at_ms=0))
        for user, count in queued.items():
            ids[user] = list(range(next_id, next_id + count))
            next_id += count
        rows = [(vid, user) for user, vids in ids.items() for vid in vids]
        await uow.conn.execute(insert(videos), [
            {"id": vid, "uuid": f"00000000-0000-4000-8000-{vid:012d}", "user_id": user, "prompt": "p",
             "model": "sora-2", "status": "PENDING", "progress": 0, "duration": 4, "aspect_ratio": "16:9",
             "credits_used": 1, "created_at_ms": 0} for vid, user in rows])
        await uow.conn.execute(insert(tasks), [
            {"video_id": vid, "route": json.dumps(["local"]), "route_index": 0, "attempts": 0,
             "created_at_ms": 0, "next_run_at_ms": NOW - 1000 + vid} for vid, _ in rows])
        await uow.commit()
    return ids


async def finish(db: Database, video_id: int) -> None:
    async with db.writing() as uow:
        await VideosStore(uow).finish_task(video_id)
        await uow.commit()


async def test_a_users_started_tasks_never_exceed_the_cap_and_others_go_first(db: Database) -> None:
    # given user 1 with ten waiting videos (the oldest) and user 2 with one
    ids = await seed_users(db, {1: 10, 2: 1})
    # when a runner with room for three claims with a cap of two per user
    first = await claim_capped(db, limit=3)
    # then user 2's only video is claimed beside user 1's two oldest, never a third of user 1's
    assert sorted(first) == [*ids[1][:2], *ids[2]]
    assert await claim_capped(db, limit=3) == []
    # when one of user 1's videos ends, exactly one more of theirs (the next oldest) is claimed
    await finish(db, ids[1][0])
    assert await claim_capped(db, limit=3) == [ids[1][2]]
    # a started task whose runner died is resumed first, and is not counted twice
    assert sorted(await claim_capped(db, limit=3, now=NOW + LEASE_MS + 1)) == [*ids[1][1:3], *ids[2]]


async def test_every_users_first_waiting_video_is_claimed_before_anyones_second(db: Database) -> None:
    # given three users whose queues were filled one after the other (user 1's are the oldest)
    ids = await seed_users(db, {1: 5, 2: 5, 3: 1})
    # when one slot at a time is claimed, the cap high enough not to matter
    order = [vid for _ in range(7) for vid in await claim_capped(db, limit=1, cap=100)]
    # then the claims go round the users, oldest first within each
    assert order == [ids[1][0], ids[2][0], ids[3][0], ids[1][1], ids[2][1], ids[1][2], ids[2][2]]


async def claim_capped(db: Database, *, limit: int, cap: int = 2, now: int = NOW) -> list[int]:
    async with db.writing() as uow:
        claimed = await VideosStore(uow).claim_due("r", now_ms=now, lease_ms=LEASE_MS, limit=limit,
                                                   max_per_user=cap)
        await uow.commit()
    return [t.video_id for t in claimed]


async def test_concurrent_claimers_together_stay_under_each_users_cap(db: Database) -> None:
    # given two users with twenty waiting videos each
    ids = await seed_users(db, {1: 20, 2: 20})

    # when eight runners claim at the same time, round after round, with a cap of three
    async def claimer(owner: str) -> list[int]:
        mine: list[int] = []
        for _ in range(3):
            async with db.writing() as uow:
                claimed = await VideosStore(uow).claim_due(owner, now_ms=NOW, lease_ms=LEASE_MS, limit=2,
                                                           max_per_user=3)
                await uow.commit()
            mine += [t.video_id for t in claimed]
        return mine

    results = await asyncio.gather(*(claimer(f"runner-{n}") for n in range(8)))
    # then exactly each user's three oldest were claimed, once each
    claimed = sorted(vid for batch in results for vid in batch)
    assert claimed == sorted(ids[1][:3] + ids[2][:3])
