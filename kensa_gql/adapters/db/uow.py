"""The unit of work: one transaction, rolled back unless committed explicitly."""

from __future__ import annotations

import asyncio
import functools
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from kensa_gql.adapters.db.engine import IMMEDIATE

if TYPE_CHECKING:
    from kensa_gql.adapters.db.reads import Reads


class UnitOfWork:
    """``async with uow: ...; await uow.commit()``. Leaving without commit rolls back.

    ``write=True`` takes the database's write lock up front on SQLite (BEGIN IMMEDIATE); on
    PostgreSQL the repositories lock the rows they change (``FOR UPDATE``). ``gate``: an
    in-process lock a SQLite writer holds around its transaction (see Database).
    """

    def __init__(self, engine: AsyncEngine, *, write: bool, gate: asyncio.Lock | None = None) -> None:
        self._engine = engine
        self._write = write
        self._gate = gate
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self.is_postgres = engine.dialect.name == "postgresql"

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "unit of work used outside 'async with'"
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        if self._gate is not None:
            await self._gate.acquire()
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

    async def commit(self) -> None:
        assert self._tx is not None
        await self._tx.commit()

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


class Database:
    """Hands out units of work over one engine, and the fast path for the hottest reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Writers of this process queue here, in order, instead
        # of each holding a pooled connection while SQLite's busy handler sleeps and retries
        # (up to 100 ms a time): at 64 concurrent generate requests that made the p99 1.9 s.
        self._write_gate = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @functools.cached_property
    def reads(self) -> Reads:
        # Imported here: reads builds on the stores, and they import this module.
        from kensa_gql.adapters.db.reads import Reads

        return Reads(self.engine, self.reading)

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=False)

    def writing(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=True, gate=self._write_gate)

    async def dispose(self) -> None:
        if "reads" in self.__dict__:
            self.reads.close()
        await self.engine.dispose()
