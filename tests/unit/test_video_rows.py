"""Turning a raw row into a domain Video: the read path's own constructor makes what Video(...) makes."""

from __future__ import annotations

import dataclasses

import pytest

from kensa_gql.adapters.db.videos_store import VIDEO_COLUMN_NAMES, video_from_mapping, video_from_values
from kensa_gql.adapters.pubsub import video_from_message, video_to_message
from kensa_gql.domain.videos import FailureCode, Video, VideoStatus

ROW = (7, "0b7f3c52-4a4e-4f7b-9a0e-0c1d2e3f4a5b", 3, "a fox in the snow", "sora-2", "GENERATING", 40, "local",
       None, None, "https://images.example/fox.png", 10, "720p", "16:9", None, 2, None, "slow", 1_700_000_000_123,
       None, None, None)


@pytest.mark.parametrize("failure_code", [None, "DEADLINE_EXCEEDED"])
@pytest.mark.parametrize("deleted_at_ms", [None, 1_700_000_999_000])
@pytest.mark.parametrize("status", [s.value for s in VideoStatus])
def test_values_build_the_video_the_constructor_builds(status: str, deleted_at_ms: int | None,
                                                       failure_code: str | None) -> None:
    row = list(ROW)
    row[VIDEO_COLUMN_NAMES.index("status")] = status
    row[VIDEO_COLUMN_NAMES.index("deleted_at_ms")] = deleted_at_ms
    row[VIDEO_COLUMN_NAMES.index("failure_code")] = failure_code
    built = video_from_values(row)
    expected = video_from_mapping(dict(zip(VIDEO_COLUMN_NAMES, row, strict=True)))
    assert built == expected
    # Every field, by value and type (== on a dataclass would miss an int where a bool belongs).
    for field in dataclasses.fields(Video):
        assert type(getattr(built, field.name)) is type(getattr(expected, field.name)), field.name
    assert built.status is VideoStatus(status) and built.deleted is (deleted_at_ms is not None)
    assert built.failure_code is (None if failure_code is None else FailureCode(failure_code))


def test_the_built_video_is_still_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        video_from_values(ROW).progress = 50  # type: ignore[misc]


def test_a_cancelled_video_travels_between_processes_with_its_failure_code() -> None:
    row = list(ROW)
    row[VIDEO_COLUMN_NAMES.index("status")] = "CANCELLED"
    row[VIDEO_COLUMN_NAMES.index("failure_code")] = "CANCELLED"
    video = video_from_values(row)
    back = video_from_message(video_to_message(video))
    assert back == video and back.failure_code is FailureCode.CANCELLED and back.status is VideoStatus.CANCELLED
