"""Video events: one broadcaster channel per process, fanned out to watchers by uuid."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator

import pytest

from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.domain.videos import Video, VideoStatus

BASE = Video(id=1, uuid="9f1c2a52-0000-4000-8000-000000000001", user_id=1, prompt="p", model="sora-2",
             status=VideoStatus.PENDING, progress=0, provider=None, video_url=None, thumbnail_url=None,
             start_image_url=None, duration=4, resolution="720p", aspect_ratio="16:9", file_size=None,
             credits_used=4, generation_time=None, created_at_ms=1_700_000_000_000, completed_at_ms=None,
             error_message=None)


def at(status: VideoStatus, progress: int, uuid: str = BASE.uuid) -> Video:
    return dataclasses.replace(BASE, status=status, progress=progress, uuid=uuid)


@pytest.fixture(params=["memory://", "redis://127.0.0.1:6379/0"])
async def events(request: pytest.FixtureRequest) -> AsyncIterator[VideoEvents]:
    hub = VideoEvents(request.param)
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_watcher_receives_the_first_event_on_every_backend(events: VideoEvents) -> None:
    # redis-py 8 with broadcaster 0.3.1's Redis backend never delivered to the first subscription.
    uuid = f"9f1c2a52-0000-4000-8000-{secrets.token_hex(6)}"
    async with events.watch(uuid) as watch:
        await events.video_changed(at(VideoStatus.GENERATING, 10, uuid))
        got = await asyncio.wait_for(watch.next(), 10)
    assert (got.status, got.progress) == (VideoStatus.GENERATING, 10)


async def test_concurrent_watchers_of_one_video_all_get_the_event(events: VideoEvents) -> None:
    uuid = f"9f1c2a52-0000-4000-8000-{secrets.token_hex(6)}"
    ready = asyncio.Barrier(4)

    async def watcher() -> Video:
        async with events.watch(uuid) as watch:
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
        async with events.watch(BASE.uuid) as watch:
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
        async with events.watch(BASE.uuid) as watch:
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
        async with events.watch(BASE.uuid), events.watch(BASE.uuid):
            assert events.watcher_count == 2
        assert events.watcher_count == 0
    finally:
        await events.stop()
