"""The database: units of work over one engine, and the fast path for the hottest reads."""

from __future__ import annotations

import asyncio
import functools
import math
import sqlite3

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kensa_gql.adapters.db.engine import DEFAULT_LOCK_TIMEOUT
from kensa_gql.adapters.db.express import Snapshots
from kensa_gql.adapters.db.reads import Reads
from kensa_gql.adapters.db.uow import Gate, KeyedGate, UnitOfWork
from kensa_gql.domain.errors import Unavailable


class Database:
    """Hands out units of work over one engine, and the fast path for the hottest reads."""

    def __init__(self, engine: AsyncEngine, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 fast_reads: bool = True, combined_writes: bool = True, read_memo: int = 0) -> None:
        """``lock_timeout``: the one given to create_engine; also bounds the wait at the write gate.
        ``fast_reads``: the hottest reads on the raw driver (reads.py); off, through units of work.
        ``combined_writes``: on PostgreSQL, a use case's hot writes joined into fewer statements
        (UnitOfWork.combined_writes); off, one statement each as on SQLite.
        ``read_memo``: on SQLite's fast path, answers each connection keeps until the next commit
        anywhere (reads.py ``_Memo``); 0: none."""
        self.engine = engine
        self.lock_timeout = lock_timeout
        self.fast_reads = fast_reads
        self.read_memo = read_memo
        self.combined_writes = combined_writes and engine.dialect.name == "postgresql"
        # The accounts' last known states, for a generate in one statement on the raw driver
        # (express.py); None where that is off: SQLite, no combined writes, or no raw paths
        # (``fast_reads`` off, as behind a transaction-mode pooler).
        self.snapshots = Snapshots() if self.combined_writes and fast_reads else None
        # SQLite has one writer at a time. Writers of this process queue here, in order, instead
        # of each holding a pooled connection while SQLite's busy handler sleeps and retries
        # (up to 100 ms a time): at 64 concurrent generate requests that made the p99 1.9 s.
        self._write_gate = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # PostgreSQL has no single writer, but one user's ledger writes queue on their account
        # row's lock. Waiting there, each holds a pooled connection: at 64 generates of 16
        # users on 15 connections, a third of the pool sat behind other connections' row locks
        # while requests of other users waited for a connection. So writers of one account queue
        # here first, and the pool serves distinct users (the row lock still orders processes).
        self._account_gate = KeyedGate() if self._write_gate is None else None

    @functools.cached_property
    def reads(self) -> Reads:
        return Reads(self.engine, self.reading, fast=self.fast_reads, memo=self.read_memo)

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=False, lock_timeout=self.lock_timeout)

    def writing(self, *, account: int | None = None) -> UnitOfWork:
        """A write unit of work. ``account``: the user whose account row it will lock."""
        gate: Gate | None = self._write_gate
        if gate is None and account is not None and self._account_gate is not None:
            gate = self._account_gate.turn(account)
        return UnitOfWork(self.engine, write=True, gate=gate, lock_timeout=self.lock_timeout,
                          combined_writes=self.combined_writes)

    async def check_writable(self, *, lock_wait: float) -> None:
        """Raise Unavailable unless the database answers and a write could start within ``lock_wait`` s.

        SQLite: take the write lock (BEGIN IMMEDIATE, then ROLLBACK) on a connection of its own,
        so a lock held elsewhere shows here without queueing behind this process's writers.
        PostgreSQL: a server that only reads (a standby, default_transaction_read_only) is refused.
        """
        async with self.reading() as uow:
            read_only = (await uow.conn.execute(text(
                "SELECT 'off'" if not uow.is_postgres else "SELECT current_setting('transaction_read_only')"
            ))).scalar_one()
        if read_only == "on":
            raise Unavailable("the database accepts no writes (read-only)", retry_after=5)
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path and path != ":memory:" and not path.startswith("file:"):
            try:
                await asyncio.to_thread(_take_write_lock, path, lock_wait)
            except sqlite3.Error as exc:
                raise Unavailable(f"the database cannot be written ({exc})",
                                  retry_after=math.ceil(self.lock_timeout)) from exc

    async def dispose(self) -> None:
        if "reads" in self.__dict__:
            await self.reads.aclose()
        await self.engine.dispose()


def _take_write_lock(path: str, timeout: float) -> None:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
