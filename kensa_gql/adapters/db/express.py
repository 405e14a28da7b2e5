"""A generate in one PostgreSQL statement: the video, its task and its freeze, no transaction around it.

The ordinary way (services/videos.py, in a unit of work) takes BEGIN, the video with its task,
the packages, the freeze, COMMIT: five round trips, each also a wake-up of the database and of
this process, and one user's generates take turns for all of them. Here it is one statement in
autocommit (atomic by itself), on the unit of work's own connection before that starts its
transaction, with the freeze computed from the account's last known state:

* ``Snapshots`` keeps, per user, the account's version and live packages as this process last
  wrote or read them (bounded, least recently used out).
* The statement bumps the account's version only if it is still the remembered one (the same
  check as LedgerStore.record_freeze: every ledger write bumps it under the account lock), and
  every other write of the statement waits for that row: if the version moved nothing is written
  and no row comes back. A package compare-and-set that fails anyway aborts the whole statement.

The caller falls back to the ordinary way whenever this answers None. Off with
``KENSA_DB_COMBINED_WRITES=false``; SQLite never comes here. tests/adapters/test_express_postgres.py
checks it against the ordinary way.
"""

from __future__ import annotations

import collections
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from kensa_gql.adapters.db.ledger_store import LedgerRaceError, live_packages, moved_packages
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.adapters.db.videos_store import VIDEO_COLUMN_NAMES, video_from_values
from kensa_gql.domain.ledger import Allocation, EntryType, HoldStatus, Package
from kensa_gql.domain.videos import Video, VideoStatus

SNAPSHOTS = 10_000  # users remembered per process

_COLUMNS = ", ".join(VIDEO_COLUMN_NAMES)
_PEEK = live_packages("$1::bigint")
# $11 is the price (the video's credits and the hold's amount); the last column divides by zero,
# aborting the statement, unless every package moved.
_GENERATE = f"""
WITH account AS (
    UPDATE credit_accounts SET version = version + 1
    WHERE user_id = $1::bigint AND version = $2::bigint
    RETURNING user_id, version
), video AS (
    INSERT INTO videos (uuid, user_id, prompt, model, status, progress, start_image_url, duration, resolution,
                        aspect_ratio, credits_used, created_at_ms, deadline_at_ms)
    SELECT $3::varchar, account.user_id, $4::text, $5::varchar, $6::varchar, 0, $7::text, $8::int, $9::varchar,
           $10::varchar, $11::bigint, $12::bigint, $13::bigint
    FROM account
    RETURNING {_COLUMNS}
), task AS (
    INSERT INTO tasks (video_id, route, route_index, next_run_at_ms, attempts, created_at_ms, traceparent)
    SELECT video.id, $14::text, 0, $12::bigint, 0, $12::bigint, $15::varchar FROM video
), moved AS (
    {moved_packages([f"${n}::bigint[]" for n in range(16, 26)])}
), hold AS (
    INSERT INTO credit_holds (user_id, video_id, amount, status, created_at_ms)
    SELECT video.user_id, video.id, $11::bigint, $26::varchar, $12::bigint FROM video
    RETURNING id
), allocated AS (
    INSERT INTO hold_allocations (hold_id, package_id, amount)
    SELECT hold.id, moved.id, moved.allocated FROM hold, moved
), entry AS (
    INSERT INTO credit_entries (trans_no, user_id, type, credits, balance_after, video_uuid, hold_id, created_at_ms)
    SELECT $27::varchar, $1::bigint, $28::varchar, -$11::bigint, $29::bigint, $3::varchar, hold.id, $12::bigint
    FROM hold
), counted AS (
    UPDATE users SET live_videos = live_videos + 1 WHERE id = $1::bigint AND EXISTS (SELECT FROM account)
)
SELECT account.version, 1 / ((SELECT count(*) FROM moved) = cardinality($16::bigint[]))::int AS all_moved,
       {", ".join(f"video.{c}" for c in VIDEO_COLUMN_NAMES)}
FROM account, video
"""  # noqa: S608 - the column names are our own constants


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An account's version and its live packages (remaining or frozen credits) at that version."""

    version: int
    packages: tuple[Package, ...]


class Snapshots:
    """The accounts' last known states in this process, at most ``size`` of them."""

    def __init__(self, size: int = SNAPSHOTS) -> None:
        self._size = size
        self._known: collections.OrderedDict[int, Snapshot] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def get(self, user_id: int) -> Snapshot | None:
        found = self._known.get(user_id)
        if found is not None:
            self._known.move_to_end(user_id)
        return found

    def put(self, user_id: int, snapshot: Snapshot) -> None:
        self._known[user_id] = snapshot
        self._known.move_to_end(user_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def drop(self, user_id: int) -> None:
        self._known.pop(user_id, None)


@dataclass(frozen=True, slots=True)
class NewVideo:
    uuid: str
    user_id: int
    prompt: str
    model: str
    duration: int
    resolution: str
    aspect_ratio: str
    start_image_url: str | None
    credits: int
    now_ms: int
    deadline_at_ms: int | None
    route: str  # JSON
    traceparent: str | None


class Express:
    """The one-statement generate on a unit of work's connection, before its transaction starts."""

    def __init__(self, uow: UnitOfWork, snapshots: Snapshots) -> None:
        assert uow.combined_writes, "PostgreSQL with combined writes only"
        self._uow = uow
        self._snapshots = snapshots

    async def snapshot(self, user_id: int, *, fresh: bool = False) -> Snapshot | None:
        """The account's remembered state, or (``fresh``, or none remembered) read now; None: no account."""
        known = None if fresh else self._snapshots.get(user_id)
        if known is not None:
            return known
        rows = await self._run(lambda c: c.fetch(_PEEK, user_id))
        if not rows:
            return None
        known = Snapshot(rows[0][0], tuple(Package(id=r[1], amount=r[2], remaining=r[3], frozen=r[4], used=r[5],
                                                   expired=r[6], expires_at_ms=r[7]) for r in rows if r[1] is not None))
        self._snapshots.put(user_id, known)
        return known

    async def generate(self, video: NewVideo, *, seen: Snapshot, moves: list[tuple[Package, Package]],
                       allocations: list[Allocation], balance_after: int) -> Video | None:
        """Write the video, its task and its freeze if the account is still at ``seen``; else None."""
        allocated = {a.package_id: a.amount for a in allocations}
        assert sorted(allocated) == sorted(old.id for old, _ in moves), "one move per allocation"
        for _, new in moves:
            new.check()
        args = (video.user_id, seen.version, video.uuid, video.prompt, video.model, VideoStatus.PENDING.value,
                video.start_image_url, video.duration, video.resolution, video.aspect_ratio, video.credits,
                video.now_ms, video.deadline_at_ms, video.route, video.traceparent,
                [old.id for old, _ in moves], [old.remaining for old, _ in moves], [old.frozen for old, _ in moves],
                [old.used for old, _ in moves], [old.expired for old, _ in moves], [new.remaining for _, new in moves],
                [new.frozen for _, new in moves], [new.used for _, new in moves], [new.expired for _, new in moves],
                [allocated[old.id] for old, _ in moves], HoldStatus.PENDING.value,
                f"CT{video.now_ms}{secrets.token_hex(5).upper()}", EntryType.FREEZE.value, balance_after)
        self._snapshots.drop(video.user_id)  # whatever happens next, it is no longer the state
        row = await self._run(lambda c: c.fetchrow(_GENERATE, *args))
        if row is None:
            return None
        changed = {new.id: new for _, new in moves}
        now = tuple(changed.get(p.id, p) for p in seen.packages)
        self._snapshots.put(video.user_id, Snapshot(row[0], tuple(p for p in now if p.remaining or p.frozen)))
        return video_from_values(tuple(row)[2:])

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        driver = await self._uow.driver()
        try:
            return await call(driver)
        except asyncpg.DivisionByZeroError as exc:
            raise LedgerRaceError("a package changed under a version that did not") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
            translated = await self._uow.driver_failed(exc)
            if translated is not None:
                raise translated from exc
            raise
