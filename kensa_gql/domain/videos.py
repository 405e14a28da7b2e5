"""The video task: its statuses, the transitions allowed between them, and their ledger effect."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class VideoStatus(enum.StrEnum):
    PENDING = "PENDING"
    GENERATING = "GENERATING"
    UPLOADING = "UPLOADING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (VideoStatus.COMPLETED, VideoStatus.FAILED)


class LedgerEffect(enum.Enum):
    NONE = "none"
    SETTLE = "settle"
    RELEASE = "release"


_ALLOWED: dict[VideoStatus, frozenset[VideoStatus]] = {
    VideoStatus.PENDING: frozenset({VideoStatus.GENERATING, VideoStatus.FAILED}),
    VideoStatus.GENERATING: frozenset({VideoStatus.GENERATING, VideoStatus.UPLOADING, VideoStatus.FAILED}),
    VideoStatus.UPLOADING: frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED}),
    VideoStatus.COMPLETED: frozenset(),
    VideoStatus.FAILED: frozenset(),
}


def can_transition(current: VideoStatus, target: VideoStatus) -> bool:
    return target in _ALLOWED[current]


def ledger_effect(target: VideoStatus) -> LedgerEffect:
    """What entering ``target`` does to the video's credit hold."""
    if target is VideoStatus.COMPLETED:
        return LedgerEffect.SETTLE
    if target is VideoStatus.FAILED:
        return LedgerEffect.RELEASE
    return LedgerEffect.NONE


def next_progress(current: int, reported: int, target: VideoStatus) -> int:
    """Progress never goes down, stays within 0..100 and is exactly 100 once completed."""
    if target is VideoStatus.COMPLETED:
        return 100
    clamped = max(0, min(99, reported))
    return max(current, clamped)


@dataclass(frozen=True, slots=True)
class Video:
    """A user's video, as the services and transports see it (never an ORM row)."""

    id: int
    uuid: str
    user_id: int
    prompt: str
    model: str
    status: VideoStatus
    progress: int
    provider: str | None
    video_url: str | None
    thumbnail_url: str | None
    start_image_url: str | None
    duration: int
    resolution: str | None
    aspect_ratio: str
    file_size: int | None
    credits_used: int
    generation_time: int | None
    created_at_ms: int
    completed_at_ms: int | None
    error_message: str | None
    deleted: bool = False


# Where a video's media lives in storage: the first segment of each key is a public folder.
MEDIA_FOLDERS = ("videos", "thumbnails")


def media_keys(uuid: str) -> tuple[str, str]:
    """The storage keys of a video's MP4 and of its thumbnail."""
    return f"videos/{uuid}.mp4", f"thumbnails/{uuid}.jpg"
