"""Video status events over broadcaster, fanned out in-process by video uuid.

Each process subscribes to ONE broadcaster channel for its whole life and hands events to its
local watchers itself. That sidesteps two broadcaster 0.3.1 defects (concurrent first
subscribers to a channel racing, and unbounded per-subscriber queues): a watcher here holds
only the latest snapshot of its video, so a slow client costs one object, not a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend

from kensa_gql.domain.videos import Video, VideoStatus

log = logging.getLogger(__name__)

CHANNEL = "kensa.video-status"


def video_to_message(video: Video) -> str:
    data = dataclasses.asdict(video)
    data["status"] = video.status.value
    return json.dumps(data, separators=(",", ":"))


def video_from_message(message: str) -> Video:
    data: dict[str, Any] = json.loads(message)
    data["status"] = VideoStatus(data["status"])
    return Video(**data)


class _RedisBackend(RedisBackend):
    """broadcaster 0.3.1's Redis backend, fixed for redis-py 8.

    Upstream wakes its reader *before* subscribing; redis-py 8 yields before it records the
    channel, so the reader finds no subscription, stops, and the first channel never gets a
    message. Subscribing first, then waking the reader, delivers.
    """

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()


def _broadcast(url: str) -> Broadcast:
    if urlsplit(url).scheme in ("redis", "rediss"):
        return Broadcast(backend=_RedisBackend(url))
    return Broadcast(url)


class Watch:
    """One subscriber's view of one video: the latest snapshot wins.

    An async context manager registered with its group while entered. Kept small on purpose
    (slots, a future only while waiting): a process may hold ten thousand of them.
    """

    __slots__ = ("_latest", "_waiter", "_watchers", "uuid")

    def __init__(self, uuid: str, watchers: dict[str, set[Watch]]) -> None:
        self.uuid = uuid
        self._watchers = watchers
        self._latest: Video | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Watch:
        self._watchers.setdefault(self.uuid, set()).add(self)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        group = self._watchers.get(self.uuid)
        if group is not None:
            group.discard(self)
            if not group:
                del self._watchers[self.uuid]

    def offer(self, video: Video) -> None:
        current = self._latest
        if current is not None and current.status.is_terminal:
            return  # nothing follows a terminal status; never overwrite it
        self._latest = video
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> Video:
        while self._latest is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        video = self._latest
        self._latest = None
        return video


class VideoEvents:
    """Publishes committed video changes and lets local subscribers watch one video."""

    def __init__(self, url: str) -> None:
        self._broadcast = _broadcast(url)
        self._watchers: dict[str, set[Watch]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        await self._broadcast.connect()
        self._listener = asyncio.create_task(self._listen(), name="video-events-listener")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._broadcast.disconnect()

    async def video_changed(self, video: Video) -> None:
        try:
            await self._broadcast.publish(channel=CHANNEL, message=video_to_message(video))
        except Exception:
            # The change is committed; subscribers re-read the database, so a lost event
            # delays a client's update but never corrupts anything.
            log.exception("could not publish the status of video %s", video.uuid)

    def watch(self, uuid: str) -> Watch:
        """``async with events.watch(uuid) as watch``: changes of that video until the block ends."""
        return Watch(uuid, self._watchers)

    @property
    def watcher_count(self) -> int:
        return sum(len(group) for group in self._watchers.values())

    async def _listen(self) -> None:
        async with self._broadcast.subscribe(channel=CHANNEL) as subscriber:
            self._subscribed.set()
            async for event in subscriber:  # type: ignore[union-attr]
                if event is None:
                    continue
                try:
                    video = video_from_message(event.message)
                except (ValueError, TypeError, KeyError):
                    log.warning("ignoring a malformed video event")
                    continue
                for watch in self._watchers.get(video.uuid, ()):
                    watch.offer(video)
