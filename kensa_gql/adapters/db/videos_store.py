"""SQL for videos, their runner tasks, and idempotency keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from kensa_gql.adapters.db.tables import DEADLINE_LIVE, idempotency_keys, tasks, users, videos
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.domain.errors import InvalidTransition
from kensa_gql.domain.videos import FailureCode, Video, VideoStatus

_VIDEO_COLUMNS = [c for c in videos.c if c.name not in ("started_at_ms", "deadline_at_ms")]

# The owner's reads, built once with named parameters. adapters/db/reads.py compiles these same
# statements for the raw driver, so the rules (the owner's videos only, soft-deleted ones never)
# live here alone.
_LIVE = and_(videos.c.user_id == bindparam("user_id"), videos.c.deleted_at_ms.is_(None))
OWNED_VIDEO = select(*_VIDEO_COLUMNS).where(videos.c.uuid == bindparam("uuid"), _LIVE)
# The list's total: the count kept on the user's row (see UnitOfWork.count_live_videos), which
# equals COUNT(*) over _LIVE without reading the owner's rows.
OWNED_TOTAL = select(users.c.live_videos).where(users.c.id == bindparam("user_id"))
# A page carries the total in a last column: one statement gives both from one snapshot (on
# PostgreSQL, READ COMMITTED gives each statement its own), in one round trip. An empty page
# carries nothing, so then the total is read on its own.
OWNED_PAGE = (select(*_VIDEO_COLUMNS, OWNED_TOTAL.scalar_subquery().label("live_total")).where(_LIVE)
              .order_by(videos.c.created_at_ms.desc(), videos.c.id.desc())
              .offset(bindparam("offset")).limit(bindparam("limit")))


def video_from_row(row: Any) -> Video:
    return video_from_mapping(row._mapping)


_STATUSES = {status.value: status for status in VideoStatus}
# None too: a video that has not failed has no code.
_FAILURES: dict[str | None, FailureCode | None] = {None: None, **{code.value: code for code in FailureCode}}
VIDEO_COLUMN_NAMES = ("id", "uuid", "user_id", "prompt", "model", "status", "progress", "provider", "video_url",
                      "thumbnail_url", "start_image_url", "duration", "resolution", "aspect_ratio", "file_size",
                      "credits_used", "generation_time", "error_message", "created_at_ms", "completed_at_ms",
                      "deleted_at_ms", "failure_code")
assert tuple(c.name for c in _VIDEO_COLUMNS) == VIDEO_COLUMN_NAMES, "video_from_values unpacks in this order"


def _values_constructor() -> Callable[[Sequence[Any]], Video]:
    """``video_from_values``, generated the way dataclasses generate ``__init__``.

    The frozen dataclass's own ``__init__`` binds 21 keyword arguments and goes through
    ``object.__setattr__`` for each field: 2.7 us a video, and a list page builds 20. This sets the
    slots through their descriptors from the row's positions: 1.0 us, the same value (checked in
    tests/unit/test_video_rows.py).
    """
    names: dict[str, Any] = {"new": object.__new__, "Video": Video, "statuses": _STATUSES, "failures": _FAILURES}
    lines = ["def video_from_values(values):", "    video = new(Video)"]
    for field in Video.__dataclass_fields__:
        names[f"set_{field}"] = getattr(Video, field).__set__
        if field == "status":
            value = f"statuses[values[{VIDEO_COLUMN_NAMES.index('status')}]]"
        elif field == "failure_code":
            value = f"failures[values[{VIDEO_COLUMN_NAMES.index('failure_code')}]]"
        elif field == "deleted":
            value = f"values[{VIDEO_COLUMN_NAMES.index('deleted_at_ms')}] is not None"
        else:
            value = f"values[{VIDEO_COLUMN_NAMES.index(field)}]"
        lines.append(f"    set_{field}(video, {value})")
    lines.append("    return video")
    exec("\n".join(lines), names)  # noqa: S102 - our own text, built from the dataclass's field names
    constructor: Callable[[Sequence[Any]], Video] = names["video_from_values"]
    constructor.__doc__ = "A video from a raw driver row of the owner statements' columns, in their order."
    return constructor


video_from_values = _values_constructor()


def video_from_mapping(r: Mapping[str, Any]) -> Video:
    return Video(
        id=r["id"], uuid=r["uuid"], user_id=r["user_id"], prompt=r["prompt"], model=r["model"],
        status=VideoStatus(r["status"]), progress=r["progress"], provider=r["provider"],
        video_url=r["video_url"], thumbnail_url=r["thumbnail_url"], start_image_url=r["start_image_url"],
        duration=r["duration"], resolution=r["resolution"], aspect_ratio=r["aspect_ratio"],
        file_size=r["file_size"], credits_used=r["credits_used"], generation_time=r["generation_time"],
        created_at_ms=r["created_at_ms"], completed_at_ms=r["completed_at_ms"],
        error_message=r["error_message"], deleted=r["deleted_at_ms"] is not None,
        failure_code=_FAILURES[r["failure_code"]],
    )


@dataclass(frozen=True, slots=True)
class Task:
    video_id: int
    route: list[str]
    route_index: int
    provider_task_id: str | None
    next_run_at_ms: int
    lease_owner: str | None
    attempts: int
    created_at_ms: int
    traceparent: str | None = None

    @property
    def provider(self) -> str:
        return self.route[min(self.route_index, len(self.route) - 1)]


# A task is started once a runner has claimed it (``attempts`` counts claims); until then it waits.
# Tasks are deleted when their video ends, so the started tasks are the videos running now.
STARTED = tasks.c.attempts > 0
_NO_CAP = 2**31 - 1


def waiting_slots(*, due_by_ms: int | None = None) -> Any:
    """Waiting tasks with their ``slot``: their owner's started tasks plus their place among the
    owner's waiting ones (1, 2, ...). Claims go by slot, then due time, so a user with a hundred
    queued videos never delays another user's first; slot > cap waits for the owner's videos to end.
    """
    c = tasks.c
    running = (select(videos.c.user_id, func.count().label("running"))
               .select_from(tasks.join(videos, videos.c.id == c.video_id))
               .where(STARTED).group_by(videos.c.user_id).subquery("running"))
    place = func.row_number().over(partition_by=videos.c.user_id, order_by=(c.next_run_at_ms, c.video_id))
    query = (select(c.video_id, c.next_run_at_ms, videos.c.user_id, videos.c.uuid,
                    (func.coalesce(running.c.running, 0) + place).label("slot"))
             .select_from(tasks.join(videos, videos.c.id == c.video_id)
                          .outerjoin(running, running.c.user_id == videos.c.user_id))
             .where(c.attempts == 0))
    if due_by_ms is not None:
        query = query.where(c.next_run_at_ms <= due_by_ms)
    return query.subquery("waiting")


def _ranked_queue() -> Any:
    slots = waiting_slots()
    return select(slots.c.uuid, func.row_number().over(
        order_by=(slots.c.slot, slots.c.next_run_at_ms, slots.c.video_id)).label("position")).subquery()


# The places of some waiting videos: one ranking of the queue for a whole page (reads.py runs it
# on its own connection; ``uuids`` is an expanding parameter).
_RANKED = _ranked_queue()
def _queue_places(among: Callable[[Any], Any]) -> Any:
    return select(_RANKED.c.uuid, _RANKED.c.position).where(among(_RANKED.c.uuid))


def _any_waiting(among: Callable[[Any], Any]) -> Any:
    """Whether any of them waits at all: two index lookups, where the ranking reads the whole queue
    (~50 us on SQLite even when it is empty). A PENDING video a runner has claimed waits no more."""
    return (select(tasks.c.video_id).select_from(tasks.join(videos, videos.c.id == tasks.c.video_id))
            .where(tasks.c.attempts == 0, among(videos.c.uuid)).limit(1))


def _in_list(column: Any) -> Any:
    return column.in_(bindparam("uuids", expanding=True))


def _in_array(column: Any) -> Any:
    """PostgreSQL: the uuids as one array parameter, so the statement's text never changes (prepared once)."""
    return column == any_(bindparam("uuids", type_=postgresql.ARRAY(String)))


QUEUE_PLACES, ANY_WAITING = _queue_places(_in_list), _any_waiting(_in_list)
# PostgreSQL in one round trip: the guard is an uncorrelated EXISTS, which the planner runs first
# as a one-time filter and, when none waits, skips the ranking whole ("One-Time Filter: $0").
QUEUE_PLACES_ARRAY = _queue_places(_in_array).where(exists(_any_waiting(_in_array)))


def _task(row: Any) -> Task:
    r = row._mapping
    return Task(video_id=r["video_id"], route=json.loads(r["route"]), route_index=r["route_index"],
                provider_task_id=r["provider_task_id"], next_run_at_ms=r["next_run_at_ms"],
                lease_owner=r["lease_owner"], attempts=r["attempts"], created_at_ms=r["created_at_ms"],
                traceparent=r.get("traceparent"))


# A new video and its runner task on PostgreSQL in one statement (one round trip): VideosStore.add_queued.
_QUEUED_PG = text(f"""
WITH v AS (
    INSERT INTO videos (uuid, user_id, prompt, model, status, progress, start_image_url, duration, resolution,
                        aspect_ratio, credits_used, created_at_ms, deadline_at_ms)
    VALUES (:uuid, :user_id, :prompt, :model, :status, 0, :start_image_url, :duration, :resolution,
            :aspect_ratio, :credits_used, :now_ms, :deadline_at_ms)
    RETURNING {", ".join(VIDEO_COLUMN_NAMES)}
), t AS (
    INSERT INTO tasks (video_id, route, route_index, next_run_at_ms, attempts, created_at_ms, traceparent)
    SELECT v.id, CAST(:route AS TEXT), 0, CAST(:now_ms AS BIGINT), 0, CAST(:now_ms AS BIGINT),
           CAST(:traceparent AS VARCHAR)
    FROM v
)
SELECT {", ".join(VIDEO_COLUMN_NAMES)} FROM v
""")  # noqa: S608 - the column names are our own constants


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    state: str
    video_uuid: str | None
    created_at_ms: int


class VideosStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- videos ---------------------------------------------------------------------------------
    async def add(self, *, uuid: str, user_id: int, prompt: str, model: str, duration: int, resolution: str,
                  aspect_ratio: str, start_image_url: str | None, credits: int, now_ms: int,
                  deadline_at_ms: int | None = None) -> Video:
        result = await self._uow.conn.execute(insert(videos).values(
            uuid=uuid, user_id=user_id, prompt=prompt, model=model, status=VideoStatus.PENDING.value,
            progress=0, duration=duration, resolution=resolution, aspect_ratio=aspect_ratio,
            start_image_url=start_image_url, credits_used=credits, created_at_ms=now_ms,
            deadline_at_ms=deadline_at_ms,
        ).returning(*_VIDEO_COLUMNS))
        self._uow.count_live_videos(user_id, +1)
        return video_from_row(result.one())

    async def add_queued(self, *, uuid: str, user_id: int, prompt: str, model: str, duration: int, resolution: str,
                         aspect_ratio: str, start_image_url: str | None, credits: int, now_ms: int,
                         route: list[str], traceparent: str | None = None,
                         deadline_at_ms: int | None = None) -> Video:
        """A new PENDING video with its runner task: ``add`` then ``add_task``, one statement on PostgreSQL."""
        if not self._uow.combined_writes:
            video = await self.add(uuid=uuid, user_id=user_id, prompt=prompt, model=model, duration=duration,
                                   resolution=resolution, aspect_ratio=aspect_ratio, start_image_url=start_image_url,
                                   credits=credits, now_ms=now_ms, deadline_at_ms=deadline_at_ms)
            await self.add_task(video.id, route, now_ms, traceparent=traceparent)
            return video
        row = (await self._uow.conn.execute(_QUEUED_PG, {
            "uuid": uuid, "user_id": user_id, "prompt": prompt, "model": model, "status": VideoStatus.PENDING.value,
            "start_image_url": start_image_url, "duration": duration, "resolution": resolution,
            "aspect_ratio": aspect_ratio, "credits_used": credits, "now_ms": now_ms, "deadline_at_ms": deadline_at_ms,
            "route": json.dumps(route), "traceparent": traceparent})).one()
        self._uow.count_live_videos(user_id, +1)
        return video_from_values(row)

    async def get_owned(self, uuid: str, user_id: int) -> Video | None:
        """The caller's non-deleted video, or None: unknown, deleted and foreign look the same."""
        row = (await self._uow.conn.execute(OWNED_VIDEO, {"uuid": uuid, "user_id": user_id})).first()
        return None if row is None else video_from_row(row)

    async def get_by_id(self, video_id: int, *, for_update: bool = False) -> Video | None:
        query = select(*_VIDEO_COLUMNS).where(videos.c.id == video_id)
        if for_update and self._uow.is_postgres:
            query = query.with_for_update()
        row = (await self._uow.conn.execute(query)).first()
        return None if row is None else video_from_row(row)

    async def get_by_uuid(self, uuid: str) -> Video | None:
        row = (await self._uow.conn.execute(select(*_VIDEO_COLUMNS).where(videos.c.uuid == uuid))).first()
        return None if row is None else video_from_row(row)

    async def get_by_uuids(self, uuids: Sequence[str]) -> list[Video]:
        found: list[Video] = []
        for start in range(0, len(uuids), 500):  # keeps each IN (...) list well under driver limits
            rows = await self._uow.conn.execute(
                select(*_VIDEO_COLUMNS).where(videos.c.uuid.in_(list(uuids[start:start + 500]))))
            found += [video_from_row(r) for r in rows]
        return found

    async def list_owned(self, user_id: int, *, offset: int, limit: int) -> tuple[list[Video], int]:
        conn = self._uow.conn
        rows = (await conn.execute(OWNED_PAGE, {"user_id": user_id, "offset": offset, "limit": limit})).all()
        if rows:
            return [video_from_row(r) for r in rows], int(rows[0].live_total)
        return [], int((await conn.execute(OWNED_TOTAL, {"user_id": user_id})).scalar_one_or_none() or 0)

    async def soft_delete(self, video_id: int, now_ms: int) -> bool:
        """Mark a live video deleted; False (and no count change) if it already was."""
        result = await self._uow.conn.execute(
            update(videos).where(videos.c.id == video_id, videos.c.deleted_at_ms.is_(None))
            .values(deleted_at_ms=now_ms).returning(videos.c.user_id))
        # Only the statement that flipped the row gets it back: a second delete, even one that
        # waited on PostgreSQL for the first to commit, matches nothing and counts nothing.
        user_id = result.scalar_one_or_none()
        if user_id is None:
            return False
        self._uow.count_live_videos(int(user_id), -1)
        return True

    async def update_status(self, video: Video, **values: Any) -> Video:
        """Compare-and-set on status: the row changes only if nobody moved it meanwhile."""
        result = await self._uow.conn.execute(
            update(videos).where(videos.c.id == video.id, videos.c.status == video.status.value)
            .values(**values).returning(*_VIDEO_COLUMNS))
        row = result.first()
        if row is None:
            raise InvalidTransition(f"video {video.uuid} is no longer {video.status}")
        return video_from_row(row)

    async def deadline_of(self, video_id: int) -> int | None:
        return (await self._uow.conn.execute(
            select(videos.c.deadline_at_ms).where(videos.c.id == video_id))).scalar_one_or_none()

    async def past_deadline(self, now_ms: int, limit: int) -> list[int]:
        """Ids of videos still in flight whose deadline has passed, soonest first (the partial index)."""
        rows = await self._uow.conn.execute(
            select(videos.c.id).where(text(DEADLINE_LIVE), videos.c.deadline_at_ms <= now_ms)
            .order_by(videos.c.deadline_at_ms).limit(limit))
        return [int(r[0]) for r in rows]

    async def mark_started(self, video_ids: Sequence[int], now_ms: int) -> None:
        """Note when a runner first took these videos (their time waiting in the queue ends there)."""
        if video_ids:
            await self._uow.conn.execute(
                update(videos).where(videos.c.id.in_(list(video_ids)), videos.c.started_at_ms.is_(None))
                .values(started_at_ms=now_ms))

    async def started_at(self, video_id: int) -> int | None:
        return (await self._uow.conn.execute(
            select(videos.c.started_at_ms).where(videos.c.id == video_id))).scalar_one_or_none()

    # -- tasks ----------------------------------------------------------------------------------
    async def add_task(self, video_id: int, route: list[str], now_ms: int, *,
                       traceparent: str | None = None) -> None:
        await self._uow.conn.execute(insert(tasks).values(
            video_id=video_id, route=json.dumps(route), route_index=0, next_run_at_ms=now_ms,
            attempts=0, created_at_ms=now_ms, traceparent=traceparent))

    async def claim_due(self, owner: str, *, now_ms: int, lease_ms: int, limit: int,
                        max_per_user: int | None = None) -> list[Task]:
        """Lease up to ``limit`` due tasks nobody holds (or whose holder's lease ran out), fairly.

        Started tasks (claimed before: a runner died or let go) come first. A waiting task is
        claimed only while its owner has fewer than ``max_per_user`` started ones, and in the
        order of ``waiting_slots``: every user's first waiting video before anyone's second.
        """
        c = tasks.c
        due = and_(c.next_run_at_ms <= now_ms, or_(c.lease_until_ms.is_(None), c.lease_until_ms < now_ms))
        slots = waiting_slots(due_by_ms=now_ms)
        slot = func.coalesce(slots.c.slot, 0)
        cap = _NO_CAP if max_per_user is None else max_per_user
        pick = (select(c.video_id).select_from(tasks.outerjoin(slots, slots.c.video_id == c.video_id))
                .where(due, or_(STARTED, slots.c.slot <= cap))
                .order_by(slot, c.next_run_at_ms, c.video_id).limit(limit))
        if self._uow.is_postgres:
            # Only the task rows are locked (the slots are a window over them, which cannot be).
            # Concurrent claimers rank from the same committed rows, so they pick from the same
            # first few waiting tasks of a user, and the lock and the lease decide who gets each.
            pick = pick.with_for_update(skip_locked=True, of=tasks)
        result = await self._uow.conn.execute(
            update(tasks).where(c.video_id.in_(pick.scalar_subquery()), due)
            .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms, attempts=c.attempts + 1)
            .returning(*tasks.c))
        return [_task(r) for r in result]

    async def queue_positions(self, uuids: Sequence[str]) -> dict[str, int]:
        """The 1-based place of each waiting video among all waiting tasks, in claim order
        (slot, then due time); videos already started or ended are left out. One ranking for
        any number of uuids (its cost grows with the queue), read only if one of them waits."""
        if not uuids or (await self._uow.conn.execute(ANY_WAITING, {"uuids": list(uuids)})).first() is None:
            return {}
        rows = await self._uow.conn.execute(QUEUE_PLACES, {"uuids": list(uuids)})
        return {str(uuid): int(position) for uuid, position in rows}

    async def task_by_video_uuid(self, uuid: str) -> Task | None:
        """The runner task of a video still in flight, whoever holds it."""
        row = (await self._uow.conn.execute(
            select(tasks).join(videos, videos.c.id == tasks.c.video_id).where(videos.c.uuid == uuid))).first()
        return None if row is None else _task(row)

    async def task_for(self, video_id: int, owner: str) -> Task | None:
        row = (await self._uow.conn.execute(
            select(tasks).where(tasks.c.video_id == video_id, tasks.c.lease_owner == owner))).first()
        return None if row is None else _task(row)

    async def update_task(self, video_id: int, owner: str, **values: Any) -> bool:
        """Write task state only while we still hold its lease (a fencing check)."""
        result = await self._uow.conn.execute(
            update(tasks).where(tasks.c.video_id == video_id, tasks.c.lease_owner == owner).values(**values))
        return result.rowcount == 1

    async def renew_leases(self, owner: str, video_ids: list[int], until_ms: int) -> set[int]:
        if not video_ids:
            return set()
        result = await self._uow.conn.execute(
            update(tasks).where(tasks.c.video_id.in_(video_ids), tasks.c.lease_owner == owner)
            .values(lease_until_ms=until_ms).returning(tasks.c.video_id))
        return {int(r[0]) for r in result}

    async def release_lease(self, video_id: int, owner: str) -> None:
        await self._uow.conn.execute(update(tasks).where(tasks.c.video_id == video_id, tasks.c.lease_owner == owner)
                                     .values(lease_owner=None, lease_until_ms=None))

    async def take_task(self, video_id: int) -> Task | None:
        """Delete a video's task whoever holds it, and return what it was: the video is being stopped.

        Taken first in a stop's transaction, so it locks rows in the runner's order (task, then
        video, then account) and cannot deadlock with a runner's status change on PostgreSQL; a
        runner that still drives the task finds it gone at its next write (LeaseLost).
        """
        row = (await self._uow.conn.execute(
            delete(tasks).where(tasks.c.video_id == video_id).returning(*tasks.c))).first()
        return None if row is None else _task(row)

    async def finish_task(self, video_id: int) -> None:
        await self._uow.conn.execute(delete(tasks).where(tasks.c.video_id == video_id))

    async def count_tasks(self) -> int:
        return int((await self._uow.conn.execute(select(func.count()).select_from(tasks))).scalar_one())

    # -- idempotency ----------------------------------------------------------------------------
    async def idempotency(self, user_id: int, key: str) -> IdempotencyRecord | None:
        row = (await self._uow.conn.execute(
            select(idempotency_keys).where(idempotency_keys.c.user_id == user_id,
                                           idempotency_keys.c.key == key))).first()
        if row is None:
            return None
        return IdempotencyRecord(request_hash=row.request_hash, state=row.state, video_uuid=row.video_uuid,
                                 created_at_ms=row.created_at_ms)

    async def insert_idempotency(self, user_id: int, key: str, request_hash: str, now_ms: int) -> bool:
        """Record a key as in progress; False if another request recorded it first."""
        try:
            async with self._uow.conn.begin_nested():
                await self._uow.conn.execute(insert(idempotency_keys).values(
                    user_id=user_id, key=key, request_hash=request_hash, state="processing", created_at_ms=now_ms))
        except IntegrityError:
            return False
        return True

    async def restart_idempotency(self, user_id: int, key: str, request_hash: str, now_ms: int) -> None:
        """Reuse a key whose record expired or whose first request died half-way."""
        await self._uow.conn.execute(
            update(idempotency_keys).where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
            .values(request_hash=request_hash, state="processing", video_uuid=None, created_at_ms=now_ms))

    async def complete_idempotency(self, user_id: int, key: str, video_uuid: str) -> None:
        await self._uow.conn.execute(
            update(idempotency_keys).where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
            .values(state="done", video_uuid=video_uuid))

    async def drop_idempotency(self, user_id: int, key: str) -> None:
        await self._uow.conn.execute(delete(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key))


async def videos_by_uuid(reading: Callable[[], UnitOfWork], uuids: Sequence[str]) -> list[Video]:
    """The current rows of these videos (for event subscribers catching up after a gap);
    ``reading`` is ``Database.reading``."""
    async with reading() as uow:
        return await VideosStore(uow).get_by_uuids(uuids)


async def waiting_places(reading: Callable[[], UnitOfWork], uuids: Sequence[str]) -> list[tuple[Video, int]]:
    """The waiting videos among these, each with its queue place (for subscribers whose place moved);
    one ranking of the queue, then the rows of only those still waiting."""
    async with reading() as uow:
        store = VideosStore(uow)
        places = await store.queue_positions(uuids)
        if not places:
            return []
        videos = await store.get_by_uuids(list(places))
    return [(v, places[v.uuid]) for v in videos if v.status is VideoStatus.PENDING and not v.deleted]
