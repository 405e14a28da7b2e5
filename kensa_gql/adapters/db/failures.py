"""Which database failures mean "cannot serve now", translated once into the domain's Unavailable.

A write lock held elsewhere past the lock timeout (SQLite ``SQLITE_BUSY``, PostgreSQL
``lock_not_available`` from ``lock_timeout``), a database that cannot be written (read-only, full,
shutting down, in recovery) or cannot be reached at all is nobody's bug: the client should come
back later, so it gets 503 ``UNAVAILABLE`` with Retry-After instead of a 500 and a traceback.
Everything else (constraint violations, SQL errors) stays what it is.
"""

from __future__ import annotations

import math

from sqlalchemy import exc as sa

from kensa_gql.domain.errors import Unavailable

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 8, 10, 13, 14
_SQLITE_UNAVAILABLE = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL,
                                 _SQLITE_CANTOPEN})
# PostgreSQL SQLSTATEs: lock_not_available, query_canceled (statement_timeout), read-only
# transaction, insufficient resources (disk full, too many connections), operator intervention
# (shutdown, cannot connect now). Class 08 (connection exception) is matched by its prefix.
# (40P01, a deadlock, and 40001 are a transaction that lost a race: worth trying again, not a 500.)
_PG_UNAVAILABLE = frozenset({"55P03", "57014", "25006", "53000", "53100", "53200", "53300", "57P01", "57P02",
                             "57P03", "58000", "58030", "40P01", "40001"})


def unavailable(error: BaseException, *, lock_timeout: float, connecting: bool = False) -> Unavailable | None:
    """The Unavailable that ``error`` amounts to, or None when it is not about availability.

    ``connecting``: the error came while opening a connection or its transaction, where any
    driver error or OSError (refused, a timeout, not accepting connections) means the database
    is out of reach; SQLite's BEGIN IMMEDIATE meeting a lock is told apart by its code.
    """
    retry_after = math.ceil(lock_timeout)  # Unavailable makes it at least 1
    if isinstance(error, sa.TimeoutError):  # no pooled connection came free in time
        return Unavailable("the database is busy; try again shortly", retry_after=retry_after)
    if connecting and isinstance(error, OSError):
        return Unavailable("the database cannot be reached; try again shortly", retry_after=retry_after)
    if not isinstance(error, sa.DBAPIError):
        return None
    if error.connection_invalidated:
        return Unavailable("the connection to the database was lost; try again", retry_after=retry_after)
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        if code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return Unavailable("the database is locked by another writer; try again shortly",
                               retry_after=retry_after)
        if code & 0xFF in _SQLITE_UNAVAILABLE:
            return Unavailable("the database cannot be written now; try again later", retry_after=retry_after)
        return None
    if connecting:  # refused, shutting down, not accepting connections, too many clients...
        return Unavailable("the database cannot be reached; try again shortly", retry_after=retry_after)
    return _postgres_unavailable(getattr(getattr(original, "driver_exception", original), "sqlstate", None),
                                 retry_after)


def driver_unavailable(error: BaseException, *, lock_timeout: float) -> Unavailable | None:
    """``unavailable`` for an error of the PostgreSQL driver itself (asyncpg, used without SQLAlchemy):
    a lost connection, or a server error whose SQLSTATE means "cannot serve now"."""
    retry_after = math.ceil(lock_timeout)
    if isinstance(error, OSError | ConnectionError) or type(error).__name__ in _LOST:
        return Unavailable("the connection to the database was lost; try again", retry_after=retry_after)
    return _postgres_unavailable(getattr(error, "sqlstate", None), retry_after)


# asyncpg's errors for a connection that is gone (named, so this module needs no driver import).
_LOST = frozenset({"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError"})


def _postgres_unavailable(state: object, retry_after: int) -> Unavailable | None:
    if isinstance(state, str):
        if state == "55P03":
            return Unavailable("the data is locked by another transaction; try again shortly",
                               retry_after=retry_after)
        if state in _PG_UNAVAILABLE or state.startswith("08"):
            return Unavailable("the database cannot serve this now; try again later", retry_after=retry_after)
    return None
