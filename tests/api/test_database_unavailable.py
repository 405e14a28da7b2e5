"""A database that cannot be written (a write lock held elsewhere, a row locked past lock_timeout):
every transport answers 503 UNAVAILABLE with Retry-After within the configured timeout, /readyz
fails while it lasts, and nothing is half-written."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from tests.api.graphql.wire import GENERATE, REQUEST, open_session
from tests.audit import audit_ledger
from tests.conftest import Serve, User

LOCK_TIMEOUT = 1.0
BOUND = LOCK_TIMEOUT * 2 + 2.0  # the gate's wait and the busy timeout, at most, plus slack


@pytest.fixture
def sqlite_lock(database_url: str) -> Iterator[Any]:
    """Call it to take SQLite's write lock from a connection of its own (as another process would)."""
    holders: list[sqlite3.Connection] = []

    def take() -> None:
        conn = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holders.append(conn)

    yield take
    for conn in holders:
        conn.rollback()
        conn.close()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite: one writer at a time, so a lock held elsewhere stops every write."""
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


@pytest.mark.parametrize("fastpath", [True, False])
async def test_a_held_write_lock_is_a_bounded_503_unavailable_everywhere(
        serve: Serve, make_user: Any, db: Database, sqlite_lock: Any, fastpath: bool) -> None:
    # given a running gateway with a 1 s lock timeout, a user, and the write lock held elsewhere
    server = serve(db_lock_timeout_seconds=LOCK_TIMEOUT, graphql_fastpath=fastpath)
    user: User = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200
        sqlite_lock()

        # when REST, GraphQL over HTTP and over WebSocket each try to write
        started = time.monotonic()
        rest = await client.post("/api/v1/video/generate", json=REQUEST, headers=user.headers)
        rest_took = time.monotonic() - started
        started = time.monotonic()
        gql = await client.post("/graphql", json={"query": GENERATE, "variables": {"input": REQUEST}},
                                headers=user.headers)
        gql_took = time.monotonic() - started
        session = await open_session(server.url, key=user.key)
        try:
            assert (await session.receive())["type"] == "connection_ack"
            await session.subscribe("1", GENERATE, {"input": REQUEST})
            over_ws = await session.until_done("1", done=("complete", "error"))
        finally:
            await session.close()
        ready = await client.get("/readyz")

    # then each is a 503 UNAVAILABLE with Retry-After, within the bound, not a 500 after a minute
    assert rest.status_code == 503, rest.text
    # (locked by another writer, or busy with this process's writers queued behind that lock)
    assert rest.json()["error"]["code"] == "UNAVAILABLE" and rest.json()["success"] is False
    assert rest.json()["error"]["message"].endswith("; try again shortly"), rest.text
    assert int(rest.headers["retry-after"]) >= 1 and rest_took < BOUND
    assert gql.status_code == 503, gql.text
    assert [e["extensions"]["code"] for e in gql.json()["errors"]] == ["UNAVAILABLE"]
    assert int(gql.headers["retry-after"]) >= 1 and gql_took < BOUND
    errors = [e for m in over_ws if m["type"] == "next" for e in m["payload"].get("errors", [])]
    assert [e["extensions"]["code"] for e in errors] == ["UNAVAILABLE"], over_ws
    assert errors[0]["extensions"]["retryAfter"] >= 1
    # and readiness fails naming the database
    assert ready.status_code == 503 and "database" in ready.json(), ready.text
    audit = await audit_ledger(db, user.user_id)
    assert (audit.available, audit.frozen, audit.used) == (100, 0, 0) and not audit.statuses


async def test_writers_queued_behind_a_held_lock_all_answer_within_the_bound(
        serve: Serve, make_user: Any, db: Database, sqlite_lock: Any) -> None:
    server = serve(db_lock_timeout_seconds=LOCK_TIMEOUT)
    user: User = await make_user(credits=100)
    sqlite_lock()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.post("/api/v1/video/generate", json=REQUEST,
                                                     headers=user.headers) for _ in range(8)))
        took = time.monotonic() - started
    assert {r.status_code for r in answers} == {503}
    assert {r.json()["error"]["code"] for r in answers} == {"UNAVAILABLE"}
    assert took < BOUND, f"8 queued writers took {took:.1f} s"


async def test_readiness_recovers_and_writes_succeed_once_the_lock_is_gone(
        serve: Serve, make_user: Any, database_url: str) -> None:
    server = serve(db_lock_timeout_seconds=LOCK_TIMEOUT)
    user: User = await make_user(credits=100)
    holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        try:
            started = time.monotonic()
            locked = await client.get("/readyz")
            assert locked.status_code == 503 and time.monotonic() - started < BOUND
        finally:
            holder.rollback()
            holder.close()
        assert (await client.get("/readyz")).status_code == 200
        made = await client.post("/api/v1/video/generate", json=REQUEST, headers=user.headers)
        assert made.status_code == 200, made.text

