"""The unit of work: one transaction, rolled back unless committed explicitly."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from kensa_gql import tracing
from kensa_gql.adapters.db.engine import DEFAULT_LOCK_TIMEOUT, IMMEDIATE
from kensa_gql.adapters.db.failures import driver_unavailable, unavailable
from kensa_gql.adapters.db.tables import users
from kensa_gql.domain.errors import Unavailable


class Gate(Protocol):
    """What a writer holds around its transaction: an asyncio.Lock, or one user's turn (KeyedGate)."""

    def acquire(self) -> Awaitable[object]: ...

    def release(self) -> None: ...


class KeyedGate:
    """One in-process lock per key (a user id), kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def turn(self, key: int) -> Gate:
        return _Turn(self, key)

    async def acquire(self, key: int) -> None:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave(key)
            raise

    def release(self, key: int) -> None:
        self._locks[key][0].release()
        self._leave(key)

    def _leave(self, key: int) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Turn:
    def __init__(self, gate: KeyedGate, key: int) -> None:
        self._gate, self._key = gate, key

    def acquire(self) -> Awaitable[None]:
        return self._gate.acquire(self._key)

    def release(self) -> None:
        self._gate.release(self._key)


class UnitOfWork:
    """``async with uow: ...; await uow.commit()``. Leaving without commit rolls back.

    ``write=True`` takes the database's write lock up front on SQLite (BEGIN IMMEDIATE); on
    PostgreSQL the repositories lock the rows they change (an account by bumping its version). ``gate``: an
    in-process lock a writer holds around its transaction (see Database.writing).

    A database that cannot serve (locked past ``lock_timeout``, unreachable, read-only) raises the
    domain's Unavailable, whether that shows on entering or inside the block (failures.py).

    It also keeps each user's count of live videos (users.live_videos): the stores note every
    video they create or soft-delete, and commit writes the net change in the same transaction.
    """

    def __init__(self, engine: AsyncEngine, *, write: bool, gate: Gate | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, combined_writes: bool = True) -> None:
        self._engine = engine
        self._lock_timeout = lock_timeout
        self._write = write
        self._gate = gate
        self._conn: AsyncConnection | None = None
        self._span: tracing.Scope | None = None
        self._tx: AsyncTransaction | None = None
        self._live_video_changes: dict[int, int] = {}
        self.is_postgres = engine.dialect.name == "postgresql"
        # PostgreSQL: the stores may join several of a use case's writes into one statement (one
        # round trip, e.g. LedgerStore.record_freeze); off, or on SQLite, one statement each.
        self.combined_writes = combined_writes and self.is_postgres

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "unit of work used outside 'async with'"
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        self._span = tracing.Scope("db.transaction", **{"db.system": self._engine.dialect.name,
                                                        "kensa.write": self._write}) if tracing.enabled else None
        try:
            return await self._enter()
        except Exception as exc:
            if self._span is not None:
                self._span.end(exc)
                self._span = None
            translated = unavailable(exc, lock_timeout=self._lock_timeout, connecting=True)
            if translated is None:
                raise
            raise translated from exc

    async def _enter(self) -> UnitOfWork:
        if self._gate is not None:
            try:
                # Writers queue here in turn; behind a lock held elsewhere each would wait its
                # own busy timeout, so the queue as a whole gets one timeout too.
                async with asyncio.timeout(self._lock_timeout):
                    await self._gate.acquire()
            except TimeoutError:
                raise Unavailable("the database is busy with other writers; try again shortly",
                                  retry_after=math.ceil(self._lock_timeout)) from None
        try:
            conn = await self._engine.connect()
            if self._write and not self.is_postgres:
                conn = await conn.execution_options(**{IMMEDIATE: True})
            self._conn = conn
            try:
                self._tx = await conn.begin()
            except BaseException:
                await conn.close()
                raise
        except BaseException:
            if self._gate is not None:
                self._gate.release()
            raise
        return self

    async def driver(self) -> Any:
        """PostgreSQL: the connection's asyncpg connection. Before any statement of the unit of work it
        is outside a transaction (SQLAlchemy's asyncpg adaption sends BEGIN with the first one)."""
        assert self.is_postgres
        return (await self.conn.get_raw_connection()).driver_connection

    async def driver_failed(self, error: BaseException) -> Unavailable | None:
        """The Unavailable a driver error amounts to; a lost connection is also taken out of the pool."""
        translated = driver_unavailable(error, lock_timeout=self._lock_timeout)
        # No SQLSTATE (the socket went) or the server shutting the session down: the connection is dead.
        if translated is not None and getattr(error, "sqlstate", None) in (None, "57P01", "57P02", "57P03"):
            await self.conn.invalidate(error if isinstance(error, Exception) else None)
        return translated

    def count_live_videos(self, user_id: int, change: int) -> None:
        """Note that this transaction adds (or soft-deletes) videos of a user; written at commit."""
        self._live_video_changes[user_id] = self._live_video_changes.get(user_id, 0) + change

    def take_live_video_change(self, user_id: int) -> int:
        """Take over the user's pending count change: the caller writes it (last, as commit would)."""
        return self._live_video_changes.pop(user_id, 0)

    async def commit(self) -> None:
        assert self._tx is not None
        await self._write_live_video_counts()
        await self._tx.commit()

    async def _write_live_video_counts(self) -> None:
        # Written last, right before COMMIT: on PostgreSQL a users row is then the last lock a
        # writer takes, and a transaction holding it waits for nothing more, so it cannot close a
        # deadlock cycle with the account row (generate), the video row (delete) or the runner's
        # task, video and account rows. It is a non-key update, so it does not conflict with the
        # FOR KEY SHARE lock that inserting a video or an API key takes on the same row. Users in
        # id order, should one transaction ever touch several. One atomic increment per user; a
        # rolled-back transaction writes none.
        changes, self._live_video_changes = self._live_video_changes, {}
        for user_id in sorted(changes):
            if changes[user_id]:
                await self.conn.execute(update(users).where(users.c.id == user_id)
                                        .values(live_videos=users.c.live_videos + changes[user_id]))

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._conn is not None and self._tx is not None
        try:
            if self._tx.is_active:
                await self._tx.rollback()
        finally:
            try:
                await self._conn.close()
            finally:
                self._conn = None
                self._tx = None
                if self._gate is not None:
                    self._gate.release()
                if self._span is not None:
                    self._span.end(exc)
                    self._span = None
        if exc is not None and isinstance(exc, Exception):
            translated = unavailable(exc, lock_timeout=self._lock_timeout)
            if translated is not None:
                raise translated from exc
