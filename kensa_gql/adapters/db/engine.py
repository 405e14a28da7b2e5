"""Engine creation, with the SQLite settings that make it safe for concurrent writers."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Execution option that makes a SQLite transaction take the write lock at BEGIN. Without it,
# two deferred transactions can both read a balance and then race to write it: SQLite answers
# the loser with SQLITE_BUSY instead of waiting, whatever the busy timeout.
IMMEDIATE = "kensa_begin_immediate"
# How long a statement waits for a lock held elsewhere before the request gets 503 UNAVAILABLE
# (KENSA_DB_LOCK_TIMEOUT_SECONDS): SQLite's busy timeout, PostgreSQL's lock_timeout.
DEFAULT_LOCK_TIMEOUT = 5.0


# PostgreSQL: the most connections one process holds, all kept open once made. With overflow
# connections (the SQLite setting: 5 kept, 10 more made on demand) a generate burst closed and
# reopened sessions all the time, each paying TLS, SQLAlchemy's dialect set-up and a fresh
# prepare of every statement: ~1 in 5 generates, most of their CPU (docs/performance.md).
PG_POOL_SIZE = 15
# PostgreSQL: a pooled connection idle longer than this is pinged (one round trip) before use, so
# a server restart or a killed session costs no request. SQLAlchemy's pool_pre_ping pinged every
# checkout with three round trips (BEGIN, ";", ROLLBACK): 3 of a generate's 14. A connection used
# this recently is not pinged; should it have died since, its error invalidates the whole pool
# (SQLAlchemy's disconnect handling) and the unit of work answers Unavailable.
PG_PING_IDLE_SECONDS = 1.0
_IDLE_SINCE = "kensa_idle_since"


def create_engine(url: str, *, pool_size: int = 5, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                  ping_idle_seconds: float = PG_PING_IDLE_SECONDS) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=10,
                                     connect_args={"timeout": lock_timeout})
        _configure_sqlite(engine, busy_timeout_ms=max(1, round(lock_timeout * 1000)))
        return engine
    # lock_timeout bounds waits for row and table locks; the connect timeout bounds reaching a
    # server that does not answer (one that refuses fails at once).
    engine = create_async_engine(url, pool_size=max(pool_size, PG_POOL_SIZE), max_overflow=0,
                                 connect_args={"timeout": max(lock_timeout, 5.0), "server_settings": {
                                     "lock_timeout": str(max(1, round(lock_timeout * 1000)))}})
    _ping_idle_connections(engine, idle_seconds=ping_idle_seconds)
    return engine


def _ping_idle_connections(engine: AsyncEngine, *, idle_seconds: float) -> None:
    """Ping a PostgreSQL connection on checkout when it sat idle in the pool for ``idle_seconds``.

    A failed ping raises DisconnectionError, on which the pool discards the connection and checks
    out another (SQLAlchemy's documented "pessimistic" disconnect handling).
    """
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new (just connected), or used a moment ago
        try:
            dbapi_connection.run_async(lambda driver: driver.fetchval(";"))
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection did not answer: {exc!r}") from exc


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN is ours to write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
