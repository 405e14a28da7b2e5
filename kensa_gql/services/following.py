"""Following one video for a ``videoStatus`` subscriber: the snapshot, then each change that is news.

The rules live in ``Following`` and are the same whichever transport runs the subscription:
Strawberry iterates ``follow`` (the stock path), and the WebSocket fast path's lean subscribers
(api/graphql/ws/subscribers.py) feed ``Following`` the changes the fan-out hands them.

* The watch starts before the snapshot is read: a change made before the watch began is in the
  snapshot, one made after it reaches the watch. Either way nothing is missed.
* A change is sent only if it moves the subscriber on (status rank, then progress); nothing
  follows a terminal status.
* A deletion while watched ends the subscription with NOT_FOUND: the answer a new subscriber gets.
* While the video waits in the queue, each move of its place is sent too (``Moved``), with the
  place the fan-out recomputed; the REST stream (SSE) has no place and ignores moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

from kensa_gql.domain import videos as domain
from kensa_gql.domain.errors import NotFound
from kensa_gql.domain.watching import STAGE, Watcher, Watchers
from kensa_gql.services import videos as service
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps


def position(video: domain.Video) -> tuple[int, int]:
    """How far a video has come, as a subscriber sees it."""
    return STAGE[video.status], video.progress


def version(video: domain.Video) -> int:
    """A per-video number that grows with every change a subscriber is sent (the SSE event id)."""
    stage, progress = position(video)
    return stage * 1000 + progress


class Following:
    """Where one subscriber stands: the position it was last sent, and whether it is done.

    Slotted and holding no snapshot: with thousands of subscribers, a video kept per subscriber
    would be most of a subscription's memory.
    """

    __slots__ = ("at", "done")

    def __init__(self, snapshot: domain.Video) -> None:
        self.at = position(snapshot)
        self.done = snapshot.status.is_terminal

    def news(self, change: domain.Video) -> bool:
        """Whether ``change`` is sent (and, if so, it now stands there); NotFound once deleted."""
        if change.deleted:
            raise NotFound()
        if self.done or position(change) <= self.at:
            return False
        self.at, self.done = position(change), change.status.is_terminal
        return True


class Moved(NamedTuple):
    """The waiting video's place in the queue moved (nothing else changed)."""

    video: domain.Video
    place: int


class Watch(Watcher):
    """One waiting subscriber's view of one video, registered while entered: the latest change wins.

    A future only while waiting, not an Event and its deque: a slow consumer costs one snapshot.
    With ``places``, a move of the video's queue place is a change too (``next`` returns a ``Moved``).
    """

    __slots__ = ("_latest", "_places", "_waiter")

    def __init__(self, uuid: str, watchers: Watchers | None = None, *, places: bool = False) -> None:
        super().__init__(uuid, watchers)
        self._latest: domain.Video | Moved | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._places = places

    async def __aenter__(self) -> Watch:
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def waiting(self) -> bool:
        return self._places and super().waiting  # no recomputation for a watch that ignores places

    def changed(self, video: domain.Video) -> None:
        self._set(video)

    def moved(self, video: domain.Video, place: int) -> None:
        if self._places:
            self._set(Moved(video, place))

    def _set(self, latest: domain.Video | Moved) -> None:
        self._latest = latest
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> domain.Video | Moved:
        while self._latest is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        video = self._latest
        self._latest = None
        return video


async def place_of(video: domain.Video, *, deps: Deps) -> int | None:
    """The queue place of a video just read (None unless it waits)."""
    if video.status is not domain.VideoStatus.PENDING:
        return None
    return (await service.queue_positions([video.uuid], deps=deps)).get(video.uuid)


async def follow(uuid: str, principal: Principal, *, deps: Deps,
                 places: bool = True) -> AsyncIterator[tuple[domain.Video, int | None]]:
    """The video now, then each change that is news or move of its queue place, until a terminal
    status (NotFound if deleted); each with its queue place (None unless it waits).
    ``places`` False: no place is read (each is None) and a move is no change."""
    async with Watch(uuid, deps.watchers, places=places) as watch:
        snapshot = await service.get_video(uuid, principal, deps=deps)
        place = await place_of(snapshot, deps=deps) if places else None
        watch.seen(snapshot, place)
        following = Following(snapshot)
        yield snapshot, place
        del snapshot
        while not following.done:
            change = await watch.next()
            if isinstance(change, Moved):
                yield change.video, change.place
            elif following.news(change):
                # Read now: the event is executed from what is yielded, and nothing reads it later.
                yield change, await place_of(change, deps=deps) if places else None


async def until_finished(uuid: str, principal: Principal, *, seconds: float, deps: Deps) -> domain.Video:
    """The video once it is terminal (or deleted), or as it is after ``seconds``: ``Prefer: wait``.

    While it waits it holds a watch and nothing else: no database connection (the two reads are
    short units of work of their own) and no worker slot. Cancelling it (the client went away)
    unregisters the watch. NotFound if the video is unknown, foreign, or deleted meanwhile.
    """
    async with Watch(uuid, deps.watchers) as watch:
        video = await service.get_video(uuid, principal, deps=deps)
        if video.status.is_terminal or seconds <= 0:
            return video
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    change = await watch.next()
                    if isinstance(change, domain.Video) and (change.deleted or change.status.is_terminal):
                        break
    # The truth, re-read: an event is only a hint of it (and it may come from another process).
    return await service.get_video(uuid, principal, deps=deps)
