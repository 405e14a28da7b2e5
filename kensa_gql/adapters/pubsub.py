"""Video status events between processes, fanned out in-process by video uuid.

Each process subscribes to ONE channel for its whole life and hands events to its local
watchers itself. That sidesteps two broadcaster 0.3.1 defects (concurrent first subscribers to a
channel racing, and unbounded per-subscriber queues): a watcher here holds only the latest
snapshot of its video, so a slow client costs one object, not a backlog.

The channel is chosen by URL scheme: ``memory://`` (one process, through broadcaster) or
``redis://`` / ``rediss://`` (every replica and worker; see ``pubsub_redis``). Pub/sub keeps no
history, so whenever the channel had to resubscribe, every watched video is re-read from the
database and offered to its watchers: a client never misses a terminal status because Redis
restarted at the wrong moment.

Queue places: whatever may move the queue (a runner's claim batch, announced with one
``QUEUE_MOVED`` message; a new, ended, cancelled or deleted video, announced by its own event)
makes each process recompute the places of the waiting videos its watchers follow, in one read,
one recomputation at a time (triggers meanwhile fold into one more), and only when one is watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from broadcaster import Broadcast

from kensa_gql.adapters.pubsub_redis import Deliver, RedisChannel, Subscribed
from kensa_gql.domain.videos import FailureCode, Video, VideoStatus
from kensa_gql.domain.watching import Watchers

log = logging.getLogger(__name__)

CHANNEL = "kensa.video-status"
SCHEMES = ("memory://", "redis://", "rediss://")
RESYNC_ATTEMPTS = 5
QUEUE_MOVED = "queue-moved"  # not JSON, so never taken for a video

# Re-reads the waiting videos among these uuids with their queue places (a database query).
Places = Callable[[Sequence[str]], Awaitable[Sequence[tuple[Video, int]]]]

# Re-reads videos by uuid (the composition root passes a database query).
Reread = Callable[[Sequence[str]], Awaitable[Sequence[Video]]]


def video_to_message(video: Video) -> str:
    data = dataclasses.asdict(video)
    data["status"] = video.status.value
    return json.dumps(data, separators=(",", ":"))


def video_from_message(message: str) -> Video:
    data: dict[str, Any] = json.loads(message)
    data["status"] = VideoStatus(data["status"])
    code = data.get("failure_code")
    data["failure_code"] = None if code is None else FailureCode(code)
    return Video(**data)


class EventChannel(Protocol):
    """Carries serialized events between the processes that share one URL."""

    @property
    def healthy(self) -> bool: ...

    async def start(self, deliver: Deliver, subscribed: Subscribed) -> None: ...

    async def publish(self, message: str) -> None: ...

    async def stop(self) -> None: ...


class BroadcasterChannel:
    """broadcaster's in-process ``memory://`` backend: a single process, nothing to lose."""

    def __init__(self, url: str) -> None:
        self._broadcast = Broadcast(url)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._listener is not None and not self._listener.done()

    async def start(self, deliver: Deliver, subscribed: Subscribed) -> None:
        await self._broadcast.connect()
        self._listener = asyncio.create_task(self._listen(deliver), name="video-events-listener")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)
        subscribed()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._broadcast.disconnect()

    async def publish(self, message: str) -> None:
        await self._broadcast.publish(channel=CHANNEL, message=message)

    async def _listen(self, deliver: Deliver) -> None:
        async with self._broadcast.subscribe(channel=CHANNEL) as subscriber:
            self._subscribed.set()
            async for event in subscriber:  # type: ignore[union-attr]
                if event is not None:
                    deliver(event.message)


def channel_for(url: str) -> EventChannel:
    if url.startswith(("redis://", "rediss://")):
        return RedisChannel(url, CHANNEL)
    if url.startswith("memory://"):
        return BroadcasterChannel(url)
    raise ValueError(f"unsupported event channel; use one of {', '.join(SCHEMES)}")


class VideoEvents:
    """Publishes committed video changes and lets local subscribers watch one video."""

    def __init__(self, url: str, *, reread: Reread | None = None, places: Places | None = None,
                 channel: EventChannel | None = None) -> None:
        self._channel = channel or channel_for(url)
        self._reread = reread
        self._places = places
        self._places_task: asyncio.Task[None] | None = None
        self._places_again = False
        self.place_reads = 0  # queue recomputations that read the database
        self._watchers: Watchers = {}
        self._started = False
        self._resync_task: asyncio.Task[None] | None = None
        self.resyncs = 0  # completed re-reads after a resubscription

    @property
    def healthy(self) -> bool:
        """Whether events from other processes are reaching this one right now."""
        return self._channel.healthy

    async def start(self) -> None:
        await self._channel.start(self._deliver, self._subscribed)
        self._started = True

    async def stop(self) -> None:
        for task in (self._resync_task, self._places_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._channel.stop()

    async def video_changed(self, video: Video) -> None:
        try:
            await self._channel.publish(video_to_message(video))
        except Exception:
            # The change is committed; subscribers re-read the database, so a lost event
            # delays a client's update but never corrupts anything.
            log.exception("could not publish the status of video %s", video.uuid)

    async def queue_moved(self) -> None:
        try:
            await self._channel.publish(QUEUE_MOVED)
        except Exception:  # places are a hint: the next move or status event corrects them
            log.exception("could not publish a queue move")

    @property
    def watchers(self) -> Watchers:
        """The registry watchers join (``Watcher(uuid, events.watchers).start()``); changes are offered there."""
        return self._watchers

    @property
    def watcher_count(self) -> int:
        return sum(len(group) for group in self._watchers.values())

    def _deliver(self, message: str) -> None:
        if message == QUEUE_MOVED:
            self._queue_moved()
            return
        try:
            video = video_from_message(message)
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring a malformed video event")
            return
        self._offer(video)
        if video.deleted or video.status is VideoStatus.PENDING or video.status.is_terminal:
            self._queue_moved()  # queued, or left the queue or a running slot: places behind may move

    def _queue_moved(self) -> None:
        if self._places is None:
            return
        if self._places_task is not None and not self._places_task.done():
            self._places_again = True  # one more pass once the running one is done
            return
        if not any(w.waiting for group in self._watchers.values() for w in group):
            return  # no watched video waits: nothing to read
        self._places_task = asyncio.create_task(self._offer_places(), name="video-events-queue")

    async def _offer_places(self) -> None:
        """Offer the current place of every watched waiting video, until no move is left unread."""
        assert self._places is not None
        while True:
            self._places_again = False
            uuids = [uuid for uuid, group in self._watchers.items() if any(w.waiting for w in group)]
            if not uuids:
                return
            try:
                places = await self._places(uuids)
            except Exception:
                log.exception("recomputing the queue places of %d watched videos failed", len(uuids))
                return
            self.place_reads += 1
            for video, place in places:
                for watcher in tuple(self._watchers.get(video.uuid, ())):
                    try:
                        watcher.offer_place(video, place)
                    except Exception:
                        log.exception("a watcher of video %s failed", video.uuid)
            if not self._places_again:
                return

    def _offer(self, video: Video) -> None:
        for watcher in tuple(self._watchers.get(video.uuid, ())):
            try:
                watcher.offer(video)
            except Exception:  # one watcher's fault must not keep the change from the others
                log.exception("a watcher of video %s failed", video.uuid)

    def _subscribed(self) -> None:
        if not self._started:
            return  # the first subscription: nobody can have missed anything yet
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = asyncio.create_task(self._resync(), name="video-events-resync")

    async def _resync(self) -> None:
        """After a gap in the subscription, offer every watched video's current state."""
        uuids = list(self._watchers)
        if self._reread is None or not uuids:
            self.resyncs += 1
            return
        for attempt in range(RESYNC_ATTEMPTS):
            try:
                videos = await self._reread(uuids)
                break
            except Exception:
                log.exception("re-reading %d watched videos failed (attempt %d)", len(uuids), attempt + 1)
                await asyncio.sleep(0.5 * 2 ** attempt)
        else:
            return
        for video in videos:
            self._offer(video)
        self._queue_moved()  # the queue may have moved unannounced too
        self.resyncs += 1
        log.info("events resubscribed: re-read %d watched videos", len(videos))
