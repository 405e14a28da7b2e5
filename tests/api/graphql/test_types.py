"""The GraphQL types built from domain objects: the shortcut in Video.from_domain builds the real thing."""

from __future__ import annotations

import dataclasses

import pytest
import strawberry

from kensa_gql.api import render
from kensa_gql.api.graphql.videos import Failure, FailureCode, Video, VideoStatus
from kensa_gql.domain import videos as domain

MADE = domain.Video(id=1, uuid="738e016f-bb6a-4640-9331-5cc1cbeeb57d", user_id=1, prompt="a lighthouse",
                    model="sora-2", status=domain.VideoStatus.COMPLETED, progress=100, provider="local",
                    video_url="http://x/v.mp4", thumbnail_url="http://x/t.jpg", start_image_url="http://x/s.jpg",
                    duration=10, resolution="720p", aspect_ratio="16:9", file_size=1234, credits_used=2,
                    generation_time=60, created_at_ms=1_700_000_000_123, completed_at_ms=1_700_000_060_456,
                    error_message=None)
PENDING = dataclasses.replace(MADE, status=domain.VideoStatus.PENDING, progress=0, provider=None, video_url=None,
                              thumbnail_url=None, start_image_url=None, resolution=None, file_size=None,
                              generation_time=None, completed_at_ms=None, error_message="not yet")
STOPPED = dataclasses.replace(PENDING, status=domain.VideoStatus.FAILED, error_message="not finished by its deadline",
                              failure_code=domain.FailureCode.DEADLINE_EXCEEDED)
CANCELLED = dataclasses.replace(STOPPED, status=domain.VideoStatus.CANCELLED, failure_code=domain.FailureCode.CANCELLED)
OLD_FAILED = dataclasses.replace(STOPPED, failure_code=None)  # failed before the taxonomy existed


@pytest.mark.parametrize("video", [MADE, PENDING, STOPPED, CANCELLED, OLD_FAILED])
def test_from_domain_builds_what_the_constructor_builds(video: domain.Video) -> None:
    built = Video(id=strawberry.ID(video.uuid), uuid=strawberry.ID(video.uuid), prompt=video.prompt,
                  model=video.model, status=VideoStatus(video.status.value), progress=video.progress,
                  provider=video.provider, video_url=video.video_url, thumbnail_url=video.thumbnail_url,
                  start_image_url=video.start_image_url, duration=video.duration, resolution=video.resolution,
                  aspect_ratio=video.aspect_ratio, file_size=video.file_size, credits_used=video.credits_used,
                  generation_time=video.generation_time, created_at=render.timestamp(video.created_at_ms) or "",
                  completed_at=render.timestamp(video.completed_at_ms), error_message=video.error_message,
                  failure=Failure.of(video))
    shortcut = Video.from_domain(video)
    assert type(shortcut) is Video
    assert vars(shortcut) == vars(built)
    # every field (queuePosition too: None until its builder fills it in)
    assert list(vars(shortcut)) == [f.name for f in dataclasses.fields(Video)
                                    if getattr(f, "base_resolver", None) is None]


def test_failure_is_null_unless_failed_or_cancelled_and_says_whether_to_retry() -> None:
    assert Failure.of(MADE) is None and Failure.of(PENDING) is None
    assert Failure.of(STOPPED) == Failure(code=FailureCode.DEADLINE_EXCEEDED, retryable=True,
                                          message="not finished by its deadline")
    assert Failure.of(CANCELLED) == Failure(code=FailureCode.CANCELLED, retryable=True,
                                            message="not finished by its deadline")
    assert Failure.of(OLD_FAILED) == Failure(code=FailureCode.INTERNAL, retryable=True,
                                             message="not finished by its deadline")
    policy = dataclasses.replace(STOPPED, failure_code=domain.FailureCode.CONTENT_POLICY)
    assert Failure.of(policy) == Failure(code=FailureCode.CONTENT_POLICY, retryable=False,
                                         message="not finished by its deadline")
