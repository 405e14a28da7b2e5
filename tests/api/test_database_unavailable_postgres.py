"""PostgreSQL's side of a database that cannot serve: a row locked elsewhere past lock_timeout is a
bounded 503 UNAVAILABLE with Retry-After on REST and GraphQL, and nothing is half-written."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from tests.api.graphql.wire import GENERATE, REQUEST, open_session
from tests.audit import audit_ledger
from tests.backends import POSTGRES_URL
from tests.conftest import Serve, User

LOCK_TIMEOUT = 1.0
BOUND = LOCK_TIMEOUT + 3.0


# PostgreSQL only.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def test_a_row_locked_past_lock_timeout_is_a_bounded_503(serve: Serve, make_user: Any, db: Database,
                                                               database_url: str) -> None:
    # given a user whose credit account row another session holds FOR UPDATE
    server = serve(db_lock_timeout_seconds=LOCK_TIMEOUT)
    user: User = await make_user(credits=100)
    holder = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE", user.user_id)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            # when REST and GraphQL try to freeze credits on it
            started = time.monotonic()
            rest = await client.post("/api/v1/video/generate", json=REQUEST, headers=user.headers)
            gql = await client.post("/graphql", json={"query": GENERATE, "variables": {"input": REQUEST}},
                                    headers=user.headers)
            took = time.monotonic() - started
        await holding.rollback()
    finally:
        await holder.close()
    # then both are 503 UNAVAILABLE with Retry-After after about lock_timeout, not a wait without end
    assert rest.status_code == 503 and rest.json()["error"]["code"] == "UNAVAILABLE", rest.text
    assert int(rest.headers["retry-after"]) >= 1
    assert gql.status_code == 503 and gql.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE", gql.text
    assert took < 2 * BOUND
    audit = await audit_ledger(db, user.user_id)
    assert (audit.available, audit.frozen, audit.used) == (100, 0, 0) and not audit.statuses


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("fastpath", [True, False])
async def test_a_database_refusing_connections_is_503_and_sockets_are_told_to_come_back(
        serve: Serve, make_user: Any, db: Database, database_url: str, fastpath: bool) -> None:
    # given a gateway and a user, then a database that drops and refuses every connection
    server = serve(db_lock_timeout_seconds=LOCK_TIMEOUT, auth_cache_seconds=0.0, graphql_fastpath=fastpath)
    user: User = await make_user(credits=100)
    await db.dispose()  # the test's own pool must not hold connections across the outage
    name = urlsplit(database_url).path.lstrip("/")
    try:
        await _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            started = time.monotonic()
            # when REST, GraphQL over HTTP, readiness and both WebSocket protocols need it
            rest = await client.get("/api/v1/video/list", headers=user.headers)
            gql = await client.post("/graphql", json={"query": "{ me { email } }"}, headers=user.headers)
            ready = await client.get("/readyz")
            took = time.monotonic() - started
        transport = await open_session(server.url, key=user.key)  # graphql-transport-ws
        transport_closed = await transport.closed_with()
        legacy = await open_session(server.url, protocol="graphql-ws", key=user.key)
        try:
            refused = await legacy.receive()
        finally:
            await legacy.close()
    finally:
        await _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    # then each says "unavailable, come back later", quickly, and nothing is a 500
    assert rest.status_code == 503 and rest.json()["error"]["code"] == "UNAVAILABLE", rest.text
    assert int(rest.headers["retry-after"]) >= 1
    assert gql.status_code == 503 and gql.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE", gql.text
    assert ready.status_code == 503, ready.text
    assert took < 3 * BOUND
    assert transport_closed == (1013, "Try again later")
    assert refused["type"] == "connection_error" and refused["payload"]["extensions"]["code"] == "UNAVAILABLE"
