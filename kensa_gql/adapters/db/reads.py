"""The hottest reads on the raw driver connection, without SQLAlchemy's per-call machinery.

A read by uuid is the gateway's most frequent query. Through async SQLAlchemy on aiosqlite it
costs a unit of work (BEGIN, SELECT, ROLLBACK), each statement handed to aiosqlite's thread and
back: most of a request's CPU. Here the same statements (VideosStore's own, compiled once for the
dialect, so the owner and soft-delete rules cannot drift) run on a plain ``sqlite3`` connection,
synchronously: in WAL mode an indexed read never waits for a writer and takes tens of
microseconds, less than one thread hand-off. Each statement sees the latest commit.

Whenever that fast path cannot answer at once (the database is busy or locked, it is in memory,
or it is not SQLite), the read goes the ordinary way, through a read unit of work.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from kensa_gql.adapters.db import accounts_store, videos_store
from kensa_gql.adapters.db.accounts_store import AccountsStore, KeyRecord, key_record
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.adapters.db.videos_store import VideosStore, video_from_values
from kensa_gql.domain.videos import Video

assert tuple(c.name for c in videos_store.OWNED_PAGE.selected_columns) == (*videos_store.VIDEO_COLUMN_NAMES,
                                                                          "live_total")
assert tuple(c.name for c in videos_store.OWNED_VIDEO.selected_columns) == videos_store.VIDEO_COLUMN_NAMES


class _Compiled:
    """A statement as SQLite text plus the order its named parameters go in."""

    def __init__(self, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=sqlite.dialect())
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup or ())

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.order)


_OWNED_VIDEO = _Compiled(videos_store.OWNED_VIDEO)
_OWNED_TOTAL = _Compiled(videos_store.OWNED_TOTAL)
_OWNED_PAGE = _Compiled(videos_store.OWNED_PAGE)
_KEY_BY_PREFIX = _Compiled(accounts_store.KEY_BY_PREFIX)


class Reads:
    """The owner's live videos and API keys by prefix, fast where the driver allows."""

    def __init__(self, engine: AsyncEngine, reading: Callable[[], UnitOfWork], *, fast: bool = True) -> None:
        self._reading = reading
        database = engine.url.database if fast and engine.dialect.name == "sqlite" else None
        self._path = database if database and database != ":memory:" and not database.startswith("file:") else None
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.fallbacks = 0  # reads that took the ordinary path although the fast one exists

    @property
    def fast(self) -> bool:
        return self._path is not None

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self._path is not None
            # One connection per thread; timeout 0: a busy database answers at once and the read
            # falls back instead of blocking the event loop.
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _fetch(self, compiled: _Compiled, params: Mapping[str, Any]) -> list[Any] | None:
        """The rows, or None when the fast path cannot answer right now."""
        try:
            return self._connection().execute(compiled.sql, compiled.args(params)).fetchall()
        except sqlite3.OperationalError:
            self.fallbacks += 1
            return None

    def _page(self, user_id: int, offset: int, limit: int) -> tuple[list[Video], int] | None:
        params = {"user_id": user_id, "offset": offset, "limit": limit}
        rows = self._fetch(_OWNED_PAGE, params)
        if rows is None:
            return None
        if rows:  # each row ends with the total, from the page's own snapshot
            return [video_from_values(r) for r in rows], int(rows[0][-1])
        counted = self._fetch(_OWNED_TOTAL, params)
        if counted is None:
            return None
        return [], int(counted[0][0]) if counted else 0

    async def owned_video(self, uuid: str, user_id: int) -> Video | None:
        """The owner's non-deleted video, or None: unknown, deleted and foreign look the same."""
        if self._path is not None:
            rows = self._fetch(_OWNED_VIDEO, {"uuid": uuid, "user_id": user_id})
            if rows is not None:
                return video_from_values(rows[0]) if rows else None
        async with self._reading() as uow:
            return await VideosStore(uow).get_owned(uuid, user_id)

    async def owned_videos(self, user_id: int, *, offset: int, limit: int) -> tuple[list[Video], int]:
        """One page of the owner's non-deleted videos, newest first, and how many there are."""
        if self._path is not None:
            page = self._page(user_id, offset, limit)
            if page is not None:
                return page
        async with self._reading() as uow:
            return await VideosStore(uow).list_owned(user_id, offset=offset, limit=limit)

    async def api_key(self, prefix: str) -> KeyRecord | None:
        """The key with this prefix and its owner, revoked or not."""
        if self._path is not None:
            rows = self._fetch(_KEY_BY_PREFIX, {"prefix": prefix})
            if rows is not None:
                return key_record(*rows[0]) if rows else None
        async with self._reading() as uow:
            return await AccountsStore(uow).key_by_prefix(prefix)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()
