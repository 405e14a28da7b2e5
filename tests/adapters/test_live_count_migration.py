"""Migration 0002 backfills each user's count of live videos from the videos already there, swaps
the list index for the partial one, and goes back down cleanly, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import alembic_config, upgrade
from kensa_gql.adapters.db.tables import metadata

# user -> (live videos, soft-deleted videos) written at revision 0001
HISTORY = {1: (5, 2), 2: (3, 0), 3: (0, 0), 4: (0, 2)}


def _state(conn: Connection) -> dict[str, Any]:
    inspector = inspect(conn)
    return {
        "user_columns": {c["name"] for c in inspector.get_columns("users")},
        "video_indexes": {ix["name"] for ix in inspector.get_indexes("videos")},
        "differences": list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                             metadata)),
    }


async def _run(url: str, *statements: tuple[str, dict[str, Any]]) -> list[Any]:
    engine = create_engine(url)
    try:
        found = []
        async with engine.begin() as conn:
            for sql, params in statements:
                result = await conn.execute(text(sql), params)
                if sql.startswith("SELECT"):
                    found.append(result.all())
        return found
    finally:
        await engine.dispose()


async def _inspect(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_state)
    finally:
        await engine.dispose()


def _history() -> list[tuple[str, dict[str, Any]]]:
    statements: list[tuple[str, dict[str, Any]]] = []
    n = 0
    for user_id, (live, deleted) in HISTORY.items():
        statements.append(("INSERT INTO users (id, email, created_at_ms) VALUES (:id, :email, 0)",
                           {"id": user_id, "email": f"u{user_id}@example.test"}))
        for i in range(live + deleted):
            n += 1
            statements.append((
                "INSERT INTO videos (uuid, user_id, prompt, model, status, progress, duration, aspect_ratio, "
                "credits_used, created_at_ms, deleted_at_ms) VALUES (:uuid, :user_id, 'p', 'sora-2', 'COMPLETED', "
                "100, 4, '16:9', 2, :at, :deleted)",
                {"uuid": f"00000000-0000-4000-8000-{n:012d}", "user_id": user_id, "at": n,
                 "deleted": n + 1 if i >= live else None}))
    return statements


async def test_upgrade_backfills_the_counts_and_downgrade_restores_0001(database_url: str) -> None:
    config = alembic_config(database_url)
    # given a database at 0001 holding videos (PostgreSQL's test databases come at head)
    await asyncio.to_thread(upgrade, database_url)
    await asyncio.to_thread(command.downgrade, config, "0001")
    at_0001 = await _inspect(database_url)
    assert "live_videos" not in at_0001["user_columns"]
    assert at_0001["video_indexes"] >= {"ix_videos_user_list"}
    await _run(database_url, *_history())

    # when it is upgraded
    await asyncio.to_thread(upgrade, database_url)

    # then every user's count is their live videos, and the schema is exactly the declared one
    [rows] = await _run(database_url, ("SELECT id, live_videos FROM users ORDER BY id", {}))
    assert {r[0]: r[1] for r in rows} == {u: live for u, (live, _) in HISTORY.items()}
    at_head = await _inspect(database_url)
    assert at_head["differences"] == []
    assert "ix_videos_user_live" in at_head["video_indexes"]
    assert "ix_videos_user_list" not in at_head["video_indexes"]

    # when it goes back down with the data in place, it is 0001 again, videos kept
    await asyncio.to_thread(command.downgrade, config, "0001")
    back = await _inspect(database_url)
    assert back["user_columns"] == at_0001["user_columns"]
    assert back["video_indexes"] == at_0001["video_indexes"]
    [videos] = await _run(database_url, ("SELECT count(*) FROM videos", {}))
    assert videos[0][0] == sum(live + deleted for live, deleted in HISTORY.values())

    # and up again, the counts come back the same
    await asyncio.to_thread(upgrade, database_url)
    [rows] = await _run(database_url, ("SELECT id, live_videos FROM users ORDER BY id", {}))
    assert {r[0]: r[1] for r in rows} == {u: live for u, (live, _) in HISTORY.items()}
