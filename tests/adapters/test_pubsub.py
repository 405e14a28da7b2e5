"""Video events: latest-wins watches, and real Redis fan-out that survives Redis going away.

Each ``VideoEvents`` here stands for one process (an API replica or a worker): it has its own
Redis subscription, exactly as it would in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.adapters.pubsub_redis import ChannelUnavailable, RedisChannel
from kensa_gql.domain.videos import Video, VideoStatus
from kensa_gql.services.following import Moved, Watch
from tests.backends import PrivateRedis, require_redis

UUID = "6f1c1f0e-6a57-4a53-9d43-3c1e4f0c2a10"
RECEIVE = 10.0  # seconds: every receive is bounded

BASE = Video(id=1, uuid=UUID, user_id=1, prompt="p", model="sora-2", status=VideoStatus.PENDING, progress=0,
             provider=None, video_url=None, thumbnail_url=None, start_image_url=None, duration=4,
             resolution="720p", aspect_ratio="16:9", file_size=None, credits_used=1, generation_time=None,
             created_at_ms=0, completed_at_ms=None, error_message=None)


def at(status: VideoStatus, progress: int = 0, uuid: str = UUID) -> Video:
    return dataclasses.replace(BASE, status=status, progress=progress, uuid=uuid)


async def receive(watch: Watch) -> Video:
    return await asyncio.wait_for(watch.next(), RECEIVE)


async def nothing_arrives(watch: Watch, within: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(watch.next(), within)
    except TimeoutError:
        return True
    return False


# -- the watch ------------------------------------------------------------------------------------

async def test_a_slow_watcher_gets_only_the_latest_snapshot() -> None:
    watch = Watch(UUID)
    for progress in (10, 20, 30):
        watch.offer(at(VideoStatus.GENERATING, progress))
    assert (await receive(watch)).progress == 30
    assert await nothing_arrives(watch)


@pytest.mark.parametrize("late", [at(VideoStatus.GENERATING, 40), at(VideoStatus.PENDING),
                                  at(VideoStatus.GENERATING, 50)])
async def test_stale_and_repeated_snapshots_are_dropped(late: Video) -> None:
    watch = Watch(UUID)
    watch.offer(at(VideoStatus.GENERATING, 50))
    await receive(watch)
    watch.offer(late)
    assert await nothing_arrives(watch)


async def test_a_deletion_gets_through_even_with_an_older_snapshot() -> None:
    # On PostgreSQL a delete can read the video just before the runner commits a status change,
    # and publish that older snapshot after it: the deletion must still reach the watcher.
    watch = Watch(UUID)
    watch.offer(at(VideoStatus.GENERATING, 30))
    await receive(watch)
    watch.offer(dataclasses.replace(at(VideoStatus.PENDING), deleted=True))
    assert (await receive(watch)).deleted


async def test_nothing_follows_a_terminal_status() -> None:
    watch = Watch(UUID)
    watch.offer(at(VideoStatus.FAILED, 10))
    watch.offer(dataclasses.replace(at(VideoStatus.FAILED, 10), deleted=True))
    watch.offer(at(VideoStatus.COMPLETED, 100))
    assert (await receive(watch)).status is VideoStatus.FAILED
    assert await nothing_arrives(watch)


async def test_memory_events_reach_local_watchers() -> None:
    events = VideoEvents("memory://")
    await events.start()
    try:
        async with Watch(UUID, events.watchers) as watch:
            await events.video_changed(at(VideoStatus.GENERATING, 5))
            assert (await receive(watch)).progress == 5
        assert events.watcher_count == 0
    finally:
        await events.stop()


# -- queue places ---------------------------------------------------------------------------------

async def test_a_queue_move_reads_only_watched_waiting_videos_and_sends_only_real_moves() -> None:
    reads: list[list[str]] = []
    read = asyncio.Event()

    async def read_places(uuids: Sequence[str]) -> list[tuple[Video, int]]:
        reads.append(sorted(uuids))
        read.set()
        return [(BASE, 2)] if UUID in uuids else []

    events = VideoEvents("memory://", places=read_places)
    await events.start()
    other, marker = "b0c1f0e0-0000-4000-8000-000000000001", "b0c1f0e0-0000-4000-8000-000000000002"
    try:
        async with Watch(marker, events.watchers) as last:
            # given a subscriber of a started video only: a queue move reads nothing
            async with Watch(other, events.watchers, places=True) as started:
                started.seen(at(VideoStatus.GENERATING, 5, uuid=other), None)
                await events.queue_moved()
                await events.video_changed(at(VideoStatus.GENERATING, 1, uuid=marker))
                await receive(last)  # delivered in order: the move was handled before it
                assert reads == [] and events.place_reads == 0
                # given a subscriber of a waiting video, third at its snapshot
                async with Watch(UUID, events.watchers, places=True) as waiting:
                    waiting.seen(BASE, 3)
                    # when the queue moves: one read, of the waiting video alone, and its new place sent
                    await events.queue_moved()
                    assert await receive(waiting) == Moved(BASE, 2)
                    assert reads == [[UUID]]
                    # when it moves again but this video keeps its place: read, and nothing sent
                    read.clear()
                    await events.queue_moved()
                    await asyncio.wait_for(read.wait(), RECEIVE)
                    assert len(reads) == 2 and await nothing_arrives(waiting)
    finally:
        await events.stop()


# -- Redis ------------------------------------------------------------------------------------------

class Truth:
    """Stands in for the database: what a re-read returns."""

    def __init__(self) -> None:
        self.videos: dict[str, Video] = {}
        self.reads: list[list[str]] = []

    async def reread(self, uuids: Sequence[str]) -> list[Video]:
        self.reads.append(list(uuids))
        return [self.videos[u] for u in uuids if u in self.videos]


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[VideoEvents, VideoEvents]]:
    """A subscribing replica and a publishing worker on the shared Redis."""
    replica, worker = VideoEvents(redis_url), VideoEvents(redis_url)
    await replica.start()
    await worker.start()
    yield replica, worker
    await replica.stop()
    await worker.stop()


async def test_the_very_first_redis_subscriber_receives(redis_url: str) -> None:
    # broadcaster 0.3.1 + redis-py 8 never delivers to the first subscription after start-up
    replica = VideoEvents(redis_url)
    await replica.start()
    worker = VideoEvents(redis_url)
    await worker.start()
    try:
        async with Watch(UUID, replica.watchers) as watch:
            await worker.video_changed(at(VideoStatus.GENERATING, 7))
            assert (await receive(watch)).progress == 7
    finally:
        await replica.stop()
        await worker.stop()


async def test_concurrent_watchers_of_one_video_all_receive(pair: tuple[VideoEvents, VideoEvents]) -> None:
    replica, worker = pair
    async with (Watch(UUID, replica.watchers) as first, Watch(UUID, replica.watchers) as second,
                Watch(UUID, replica.watchers) as third, Watch(UUID, worker.watchers) as on_the_worker):
        await worker.video_changed(at(VideoStatus.UPLOADING, 99))
        received = await asyncio.gather(*(receive(w) for w in (first, second, third, on_the_worker)))
    assert {v.status for v in received} == {VideoStatus.UPLOADING}
    assert replica.watcher_count == 0


async def test_watchers_of_other_videos_hear_nothing(pair: tuple[VideoEvents, VideoEvents]) -> None:
    replica, worker = pair
    other = "0b5e1a3c-1111-4222-8333-444455556666"
    async with Watch(other, replica.watchers) as bystander, Watch(UUID, replica.watchers) as watch:
        await worker.video_changed(at(VideoStatus.GENERATING, 3))
        await receive(watch)
        assert await nothing_arrives(bystander)


def _fast_channel(url: str) -> RedisChannel:
    return RedisChannel(url, "kensa.video-status", ping_every=0.3, reply_timeout=0.7, max_backoff=0.5)


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(15):
            while not condition():  # noqa: ASYNC110 - the state belongs to a background task
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_watchers_get_the_terminal_status_across_a_redis_restart(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    truth = Truth()
    replica = VideoEvents(redis.url, reread=truth.reread, channel=_fast_channel(redis.url))
    worker = VideoEvents(redis.url, channel=_fast_channel(redis.url))
    try:
        await replica.start()
        await worker.start()
        done_during_outage = at(VideoStatus.COMPLETED, 100)
        later = "9d7a0c52-2222-4333-8444-555566667777"
        async with Watch(UUID, replica.watchers) as watch, Watch(later, replica.watchers) as watch_later:
            # given a watcher that is receiving live events
            await worker.video_changed(at(VideoStatus.GENERATING, 20))
            assert (await receive(watch)).progress == 20
            # when Redis dies, the video completes while it is down (that event is lost) ...
            redis.kill()
            await _until(lambda: not replica.healthy, "the replica to notice the outage")
            truth.videos[UUID] = done_during_outage
            await worker.video_changed(done_during_outage)
            # ... and Redis comes back
            redis.start()
            # then the replica resubscribes, re-reads what it watches, and the watcher gets the end
            got = await receive(watch)
            assert got.status is VideoStatus.COMPLETED
            assert truth.reads and UUID in truth.reads[-1]
            # and live events flow again, through the worker's reconnected publisher too
            await _until(lambda: worker.healthy, "the worker to resubscribe")
            await worker.video_changed(at(VideoStatus.FAILED, 30, uuid=later))
            assert (await receive(watch_later)).status is VideoStatus.FAILED
        assert replica.resyncs >= 1
    finally:
        await replica.stop()
        await worker.stop()
        redis.stop()


async def test_a_frozen_redis_is_noticed_and_the_subscription_recovers(tmp_path: Path) -> None:
    # a server that stops answering without closing the connection (SIGSTOP) looks like a network
    # partition: only the ping notices it
    redis = PrivateRedis(tmp_path)
    redis.start()
    truth = Truth()
    replica = VideoEvents(redis.url, reread=truth.reread, channel=_fast_channel(redis.url))
    try:
        await replica.start()
        async with Watch(UUID, replica.watchers) as watch:
            redis.freeze()
            await _until(lambda: not replica.healthy, "the replica to notice the frozen server")
            truth.videos[UUID] = at(VideoStatus.COMPLETED, 100)
            redis.thaw()
            assert (await receive(watch)).status is VideoStatus.COMPLETED
        assert replica.healthy
    finally:
        await replica.stop()
        redis.stop()


async def test_start_fails_clearly_when_redis_is_unreachable(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)  # never started: nothing listens on its port
    channel = RedisChannel(redis.url, "kensa.video-status", reply_timeout=0.3, max_backoff=0.2)
    with pytest.raises(ChannelUnavailable, match="could not subscribe to Redis"):
        await asyncio.wait_for(channel.start(lambda _m: None, lambda: None, within=1.0), 5)


async def test_a_quiet_but_healthy_subscription_is_kept(redis_url: str) -> None:
    # the liveness ping must not mistake silence for a dead server
    channel = _fast_channel(redis_url)
    events = VideoEvents(redis_url, channel=channel)
    await events.start()
    try:
        await asyncio.sleep(2.5)  # about eight ping intervals with no events at all
        assert channel.subscriptions == 1 and events.healthy
    finally:
        await events.stop()


# -- the same behaviour through every backend (from the GraphQL branch) -------------------------

@pytest.fixture(params=["memory://", "redis://127.0.0.1:6379/0"])
async def events(request: pytest.FixtureRequest) -> AsyncIterator[VideoEvents]:
    hub = VideoEvents(request.param)
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_watcher_receives_the_first_event_on_every_backend(events: VideoEvents) -> None:
    # redis-py 8 with broadcaster 0.3.1's Redis backend never delivered to the first subscription.
    uuid = f"9f1c2a52-0000-4000-8000-{secrets.token_hex(6)}"
    async with Watch(uuid, events.watchers) as watch:
        await events.video_changed(at(VideoStatus.GENERATING, 10, uuid))
        got = await asyncio.wait_for(watch.next(), 10)
    assert (got.status, got.progress) == (VideoStatus.GENERATING, 10)


async def test_concurrent_watchers_of_one_video_all_get_the_event(events: VideoEvents) -> None:
    uuid = f"9f1c2a52-0000-4000-8000-{secrets.token_hex(6)}"
    ready = asyncio.Barrier(4)

    async def watcher() -> Video:
        async with Watch(uuid, events.watchers) as watch:
            await ready.wait()
            return await asyncio.wait_for(watch.next(), 10)

    tasks = [asyncio.create_task(watcher()) for _ in range(3)]
    await ready.wait()
    await events.video_changed(at(VideoStatus.GENERATING, 42, uuid))
    got = await asyncio.gather(*tasks)
    assert [v.progress for v in got] == [42, 42, 42]
    assert events.watcher_count == 0


async def test_a_slow_watcher_holds_only_the_latest_snapshot() -> None:
    events = VideoEvents("memory://")
    await events.start()
    try:
        async with Watch(BASE.uuid, events.watchers) as watch:
            for progress in (10, 20, 30):
                await events.video_changed(at(VideoStatus.GENERATING, progress))
            await asyncio.sleep(0.05)
            assert (await asyncio.wait_for(watch.next(), 5)).progress == 30
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(watch.next(), 0.1)
    finally:
        await events.stop()


async def test_a_terminal_status_is_never_overwritten_before_it_is_read() -> None:
    events = VideoEvents("memory://")
    await events.start()
    try:
        async with Watch(BASE.uuid, events.watchers) as watch:
            await events.video_changed(at(VideoStatus.COMPLETED, 100))
            await events.video_changed(at(VideoStatus.GENERATING, 50))
            await asyncio.sleep(0.05)
            assert (await asyncio.wait_for(watch.next(), 5)).status is VideoStatus.COMPLETED
    finally:
        await events.stop()


async def test_leaving_a_watch_frees_it() -> None:
    events = VideoEvents("memory://")
    await events.start()
    try:
        async with Watch(BASE.uuid, events.watchers), Watch(BASE.uuid, events.watchers):
            assert events.watcher_count == 2
        assert events.watcher_count == 0
    finally:
        await events.stop()
