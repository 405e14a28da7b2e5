"""Following one video for a ``videoStatus`` subscriber: the snapshot, then each change that is news.

The rules live in ``Following`` and are the same whichever transport runs the subscription:
Strawberry iterates ``follow`` (the stock path), and the WebSocket fast path's lean subscribers
(api/graphql/ws/subscribers.py) feed ``Following`` the changes the fan-out hands them.

* The watch starts before the snapshot is read: a change made before the watch began is in the
  snapshot, one made after it reaches the watch. Either way nothing is missed.
* A change is sent only if it moves the subscriber on (status rank, then progress); nothing
  follows a terminal status.
* A deletion while watched ends the subscription with NOT_FOUND: the answer a new subscriber gets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

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


class Watch(Watcher):
    """One waiting subscriber's view of one video, registered while entered: the latest change wins.

    A future only while waiting, not an Event and its deque: a slow consumer costs one snapshot.
    """

    __slots__ = ("_latest", "_waiter")

    def __init__(self, uuid: str, watchers: Watchers | None = None) -> None:
        super().__init__(uuid, watchers)
        self._latest: domain.Video | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Watch:
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.stop()

    def changed(self, video: domain.Video) -> None:
        self._latest = video
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> domain.Video:
        while self._latest is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        video = self._latest
        self._latest = None
        return video


async def follow(uuid: str, principal: Principal, *, deps: Deps) -> AsyncIterator[domain.Video]:
    """The video now, then each change that is news, until a terminal status (NotFound if deleted)."""
    async with Watch(uuid, deps.watchers) as watch:
        snapshot = await service.get_video(uuid, principal, deps=deps)
        following = Following(snapshot)
        yield snapshot
        del snapshot
        while not following.done:
            change = await watch.next()
            if following.news(change):
                yield change


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
                    if change.deleted or change.status.is_terminal:
                        break
    # The truth, re-read: an event is only a hint of it (and it may come from another process).
    return await service.get_video(uuid, principal, deps=deps)
