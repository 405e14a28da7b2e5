"""The hottest reads on the raw driver connection, without SQLAlchemy's per-call machinery.

A read by uuid is the gateway's most frequent query. Through async SQLAlchemy it costs a unit of
work (BEGIN, SELECT, ROLLBACK): on aiosqlite each statement is handed to a thread and back, on
asyncpg each is a round trip, and SQLAlchemy's async adaption wraps every call. Here the same
statements (the stores' own, compiled once for the dialect, so the owner and soft-delete rules
cannot drift) run straight on the driver, one statement each, outside any transaction, so each
sees the latest commit:

* SQLite: a plain ``sqlite3`` connection, synchronously: in WAL mode an indexed read never waits
  for a writer and takes tens of microseconds, less than one thread hand-off.
* PostgreSQL: a small asyncpg pool of its own; asyncpg prepares each statement once per
  connection, so a read is one round trip (bind, execute). Connections go back to the pool
  without asyncpg's reset query (another round trip): nothing here changes session state.

On SQLite the answers are also kept (``_Memo``, ``KENSA_DB_READ_MEMO``) until any connection, of
this process or another, commits: the WAL-index header in SQLite's own mapping tells, in a third
of a microsecond, so a video polled again, or a page read again, before anything changed is not
read again.

Whenever the fast path cannot answer (the SQLite file is busy or locked, the database is in
memory, PostgreSQL cannot be reached, any other dialect, or ``KENSA_DB_FAST_READS=false``), the
read goes the ordinary way, through a read unit of work.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
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
    """A statement as the driver's text plus the order its named parameters go in."""

    def __init__(self, statement: Select[Any], dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup or ())
        # Constants of the statement itself (the 0 of a coalesce) are bound parameters too.
        self.constants = {name: value for name, value in compiled.params.items() if value is not None}
        # The common case, every parameter given and more than one: itemgetter makes the tuple in C.
        self._take = operator.itemgetter(*self.order) if len(self.order) > 1 else None

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if self._take is not None and not self.constants:
            try:
                return self._take(params)  # type: ignore[no-any-return]
            except KeyError:
                pass  # a parameter missing: the general way below says which
        return tuple(params[name] if name in params else self.constants[name] for name in self.order)


_STATEMENTS = {"video": videos_store.OWNED_VIDEO, "total": videos_store.OWNED_TOTAL,
               "page": videos_store.OWNED_PAGE, "key": accounts_store.KEY_BY_PREFIX}
_SQLITE = {name: _Compiled(s, sqlite.dialect()) for name, s in _STATEMENTS.items()}
# On PostgreSQL the queue statements take the uuids as one array (SQLite's text varies with them).
_POSTGRES = {name: _Compiled(s, pg_asyncpg.dialect())  # type: ignore[no-untyped-call]
             for name, s in {**_STATEMENTS, "queue_places": videos_store.QUEUE_PLACES_ARRAY}.items()}
_OWNED_VIDEO, _OWNED_TOTAL, _OWNED_PAGE, _KEY_BY_PREFIX = (_SQLITE[n] for n in ("video", "total", "page", "key"))
# Queue places take a list: SQLite's text gets one ``?`` per uuid at the expanding parameter.
_QUEUE_PLACES = _Compiled(videos_store.QUEUE_PLACES, sqlite.dialect())
_ANY_WAITING = _Compiled(videos_store.ANY_WAITING, sqlite.dialect())
_UUIDS = "(__[POSTCOMPILE_uuids])"
assert all(_UUIDS in c.sql and c.order.count("uuids") == 1 for c in (_QUEUE_PLACES, _ANY_WAITING))


# Bumped by SQLite whenever another connection (of any process) commits: the memo's clock
# where the WAL-index header cannot be read.
_DATA_VERSION = "PRAGMA data_version"
# The WAL-index header's first copy (https://www.sqlite.org/walformat.html, section 2.2.1): its
# change counter, frame count, salts and checksum move with every commit, and a writer rewrites
# this copy last, once the commit is complete.
_WAL_HEADER = 48
_MISSING = object()


def _wal_index(conn: sqlite3.Connection, path: str) -> int | None:
    """Where SQLite has this database's WAL index (its ``-shm`` file) mapped in this process, or None
    (not in WAL mode, or no ``/proc/self/maps``: not Linux).

    SQLite maps the file when a connection first reads and keeps the mapping while any connection
    of the process has the database open, this one included. We read that mapping rather than
    open the file ourselves: closing any descriptor of the ``-shm`` file would drop every POSIX
    lock this process holds on it, SQLite's own included, and let another process reset the
    index under it.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return None
    conn.execute(_DATA_VERSION).fetchone()  # a read: the WAL index is mapped now
    shm = os.path.realpath(path) + "-shm"
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                # address-range perms offset device inode path; the first region has offset 0
                fields = line.rstrip("\n").split(maxsplit=5)
                if len(fields) == 6 and fields[5] == shm and int(fields[2], 16) == 0:
                    return int(fields[0].partition("-")[0], 16)
    except (OSError, ValueError):
        pass
    return None


class _Memo:
    """One connection's answers since the database last changed (``KENSA_DB_READ_MEMO``).

    Every read here is a function of the database's content and its arguments alone, so an answer
    stays right until some connection commits. The WAL-index header says whether one has, in a
    third of a microsecond and without a system call (``PRAGMA data_version`` takes a read
    transaction: about what re-reading a video costs). The first read after any commit empties
    the memo. What is kept is immutable (frozen videos, tuples): callers can share it.
    """

    __slots__ = ("answers", "capacity", "header", "version")

    def __init__(self, capacity: int, header: int | None) -> None:
        self.capacity = capacity
        self.header = header  # the WAL index's address in SQLite's own mapping (None: ask PRAGMA)
        self.version: object = None
        self.answers: dict[Any, Any] = {}

    def current(self, conn: sqlite3.Connection) -> dict[Any, Any]:
        """The answers still right: none kept from before the latest commit."""
        header = self.header
        version = (ctypes.string_at(header, _WAL_HEADER) if header is not None
                   else conn.execute(_DATA_VERSION).fetchone()[0])
        if version != self.version:
            self.version = version
            self.answers = {}
        elif len(self.answers) >= self.capacity:
            self.answers = {}  # full: start again rather than track which is oldest
        return self.answers

    def close(self) -> None:
        """Before the connection closes: the mapping may go with it."""
        self.header = None


def _expanded(compiled: _Compiled, uuids: Sequence[str]) -> tuple[str, list[Any]]:
    """SQLite's text and arguments for a statement with the expanding ``uuids`` parameter."""
    sql = compiled.sql.replace(_UUIDS, "(" + ", ".join("?" * len(uuids)) + ")")
    args: list[Any] = []
    for name in compiled.order:
        args.extend(uuids if name == "uuids" else (compiled.constants[name],))
    return sql, args
# The PostgreSQL pool: enough connections that 64 concurrent requests keep the server busy, few
# enough to leave the engine's pool its share of max_connections.
PG_POOL_SIZE = 8
PG_RETRY_SECONDS = 1.0  # after the pool could not be opened, the ordinary path only, this long
PG_APPLICATION_NAME = "kensa-gql fast reads"  # how the pool's sessions show in pg_stat_activity


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Connections come back as they went: no transaction, LISTEN, cursor or SET is ever left."""


class _Postgres:
    """The fast path's own asyncpg pool, opened on the first read."""

    def __init__(self, connect: dict[str, Any]) -> None:
        self._connect = connect
        self.pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._retry_at = 0.0

    async def open(self) -> asyncpg.Pool | None:
        if time.monotonic() < self._retry_at:
            return None
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.pool is None:
                try:
                    self.pool = await asyncpg.create_pool(**self._connect, min_size=1, max_size=PG_POOL_SIZE,
                                                          reset=_no_reset)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    self._retry_at = time.monotonic() + PG_RETRY_SECONDS
                    return None
        return self.pool

    async def fetch(self, compiled: _Compiled, params: Mapping[str, Any]) -> list[Any] | None:
        pool = self.pool or await self.open()
        if pool is None:
            return None
        try:
            async with pool.acquire() as conn:
                return await conn.fetch(compiled.sql, *compiled.args(params))  # type: ignore[no-any-return]
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError):
            # A lost session (a server restart, a killed backend) included: the pool replaces it.
            return None

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()


def _pg_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """The engine's own connect arguments (host, credentials, ``?ssl=`` and the like from the URL),
    less those only SQLAlchemy's adaption knows."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    accepted = inspect.signature(asyncpg.connect).parameters
    args: dict[str, Any] = {k: v for k, v in params.items() if k in accepted}
    args["timeout"] = 5.0
    args["server_settings"] = {"application_name": PG_APPLICATION_NAME}
    return args


class Reads:
    """The owner's live videos and API keys by prefix, fast where the driver allows."""

    def __init__(self, engine: AsyncEngine, reading: Callable[[], UnitOfWork], *, fast: bool = True,
                 memo: int = 0) -> None:
        """``memo``: how many SQLite answers each connection keeps between commits (0: none)."""
        self._reading = reading
        self._memo_capacity = memo
        database = engine.url.database if fast and engine.dialect.name == "sqlite" else None
        self._path = database if database and database != ":memory:" and not database.startswith("file:") else None
        self._pg = (_Postgres(_pg_connect_args(engine))
                    if fast and engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg" else None)
        self._local = threading.local()
        self._opened: list[tuple[sqlite3.Connection, _Memo | None]] = []
        self._lock = threading.Lock()
        self.fallbacks = 0  # reads that took the ordinary path although the fast one exists

    @property
    def fast(self) -> bool:
        return self._path is not None or self._pg is not None

    async def _pg_fetch(self, compiled: str, params: Mapping[str, Any]) -> list[Any] | None:
        assert self._pg is not None
        rows = await self._pg.fetch(_POSTGRES[compiled], params)
        if rows is None:
            self.fallbacks += 1
        return rows

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self._path is not None
            # One connection per thread; timeout 0: a busy database answers at once and the read
            # falls back instead of blocking the event loop.
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA query_only=ON")
                memo = _Memo(self._memo_capacity, _wal_index(conn, self._path)) if self._memo_capacity > 0 else None
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn, self._local.memo = conn, memo
            with self._lock:
                self._opened.append((conn, memo))
        return conn

    def _answer(self, key: tuple[Any, ...], read: Callable[[sqlite3.Connection], Any]) -> Any:
        """``read(connection)``: kept in the connection's memo (when on) and given again until the
        database changes. ``_MISSING`` when the fast path cannot answer right now (busy, locked)."""
        try:
            conn = self._connection()
            memo: _Memo | None = self._local.memo
            if memo is None:
                return read(conn)
            answers = memo.current(conn)
            found = answers.get(key, _MISSING)
            if found is _MISSING:
                # Read after the version check: a commit in between only makes the memo
                # hold newer rows than its version says, and the next check empties it.
                found = answers[key] = read(conn)
            return found
        except sqlite3.OperationalError:
            self.fallbacks += 1
            return _MISSING

    def _page(self, user_id: int, offset: int, limit: int) -> tuple[tuple[Video, ...], int] | Any:
        def read(conn: sqlite3.Connection) -> tuple[tuple[Video, ...], int]:
            rows = conn.execute(_OWNED_PAGE.sql, _OWNED_PAGE.args(params)).fetchall()
            if rows:  # each row ends with the total, from the page's own snapshot
                return tuple(video_from_values(r) for r in rows), int(rows[0][-1])
            counted = conn.execute(_OWNED_TOTAL.sql, _OWNED_TOTAL.args(params)).fetchall()
            return (), int(counted[0][0]) if counted else 0

        params = {"user_id": user_id, "offset": offset, "limit": limit}
        return self._answer(("page", user_id, offset, limit), read)

    async def owned_video(self, uuid: str, user_id: int) -> Video | None:
        """The owner's non-deleted video, or None: unknown, deleted and foreign look the same."""
        if self._path is not None:
            def read(conn: sqlite3.Connection) -> Video | None:
                rows = conn.execute(_OWNED_VIDEO.sql, _OWNED_VIDEO.args(params)).fetchall()
                return video_from_values(rows[0]) if rows else None

            params = {"uuid": uuid, "user_id": user_id}
            found = self._answer(("video", uuid, user_id), read)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
        elif self._pg is not None:
            rows = await self._pg_fetch("video", {"uuid": uuid, "user_id": user_id})
            if rows is not None:
                return video_from_values(rows[0]) if rows else None
        async with self._reading() as uow:
            return await VideosStore(uow).get_owned(uuid, user_id)

    async def owned_videos(self, user_id: int, *, offset: int, limit: int) -> tuple[list[Video], int]:
        """One page of the owner's non-deleted videos, newest first, and how many there are."""
        if self._path is not None:
            page = self._page(user_id, offset, limit)
            if page is not _MISSING:
                videos, total = page
                return list(videos), total  # the caller's own list: the memo keeps the tuple
        elif self._pg is not None:
            params = {"user_id": user_id, "offset": offset, "limit": limit}
            rows = await self._pg_fetch("page", params)
            if rows:
                return [video_from_values(r) for r in rows], int(rows[0][-1])
            if rows is not None:
                counted = await self._pg_fetch("total", params)
                if counted is not None:
                    return [], int(counted[0][0]) if counted else 0
        async with self._reading() as uow:
            return await VideosStore(uow).list_owned(user_id, offset=offset, limit=limit)

    async def api_key(self, prefix: str) -> KeyRecord | None:
        """The key with this prefix and its owner, revoked or not."""
        if self._path is not None:
            def read(conn: sqlite3.Connection) -> KeyRecord | None:
                rows = conn.execute(_KEY_BY_PREFIX.sql, _KEY_BY_PREFIX.args({"prefix": prefix})).fetchall()
                return key_record(*rows[0]) if rows else None

            found = self._answer(("key", prefix), read)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
        elif self._pg is not None:
            rows = await self._pg_fetch("key", {"prefix": prefix})
            if rows is not None:
                return key_record(*rows[0]) if rows else None
        async with self._reading() as uow:
            return await AccountsStore(uow).key_by_prefix(prefix)

    async def queue_positions(self, uuids: Sequence[str]) -> dict[str, int]:
        """Where each of these videos waits in the queue (absent once started or ended), in one
        statement. On SQLite it runs on this module's connection: through a unit of work it also
        paid a connection checkout, which made a page holding one PENDING video cost milliseconds."""
        if not uuids:
            return {}
        if self._path is not None:
            def read(conn: sqlite3.Connection) -> tuple[tuple[str, int], ...]:
                if not conn.execute(*_expanded(_ANY_WAITING, uuids)).fetchall():
                    return ()  # none of them waits: no ranking to read
                return tuple((str(uuid), int(position))
                             for uuid, position in conn.execute(*_expanded(_QUEUE_PLACES, uuids)).fetchall())

            places = self._answer(("places", *uuids), read)
            if places is not _MISSING:
                return dict(places)
        elif self._pg is not None:
            # One round trip, no transaction (a unit of work took three: BEGIN, the statement,
            # ROLLBACK), the waiting check inside it (QUEUE_PLACES_ARRAY).
            ranked = await self._pg_fetch("queue_places", {"uuids": list(uuids)})
            if ranked is not None:
                return {str(uuid): int(position) for uuid, position in ranked}
        async with self._reading() as uow:
            return await VideosStore(uow).queue_positions(uuids)

    async def aclose(self) -> None:
        """Close the SQLite connections and the PostgreSQL pool."""
        self.close()
        if self._pg is not None:
            await self._pg.close()

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn, memo in opened:
            if memo is not None:
                memo.close()
            conn.close()
        self._local = threading.local()
