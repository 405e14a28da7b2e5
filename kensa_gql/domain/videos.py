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
    CANCELLED = "CANCELLED"  # stopped by its owner; the legacy REST API shows it as FAILED

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def legacy(self) -> str:
        """The status on the legacy ``/api/v1`` mount, which knows five: CANCELLED reads FAILED there."""
        return "FAILED" if self is VideoStatus.CANCELLED else self.value


_TERMINAL = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED})


class FailureCode(enum.StrEnum):
    """Why a video ended FAILED or CANCELLED: a small taxonomy clients can branch on."""

    CONTENT_POLICY = "CONTENT_POLICY"              # the vendor refused the prompt or image itself
    INVALID_INPUT = "INVALID_INPUT"                # the vendor refused the parameters or the image
    PROVIDER_ERROR = "PROVIDER_ERROR"              # the vendor failed for a reason of its own
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"  # no vendor could take or finish it (overload, outage)
    RESULT_UNAVAILABLE = "RESULT_UNAVAILABLE"      # made, but the result could not be fetched or played
    STORAGE_ERROR = "STORAGE_ERROR"                # made, but it could not be stored
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"        # not finished by the deadline its request set
    TIMEOUT = "TIMEOUT"                            # not finished within the deployment's task timeout
    CANCELLED = "CANCELLED"                        # its owner cancelled it
    INTERNAL = "INTERNAL"                          # our own fault

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed if made again (what ``retryVideo`` allows)."""
        return self not in _NOT_RETRYABLE  # (a member looked up on the class is a descriptor call)


_NOT_RETRYABLE = frozenset({FailureCode.CONTENT_POLICY, FailureCode.INVALID_INPUT})


class LedgerEffect(enum.Enum):
    NONE = "none"
    SETTLE = "settle"
    RELEASE = "release"


_ALLOWED: dict[VideoStatus, frozenset[VideoStatus]] = {
    VideoStatus.PENDING: frozenset({VideoStatus.GENERATING, VideoStatus.FAILED, VideoStatus.CANCELLED}),
    VideoStatus.GENERATING: frozenset({VideoStatus.GENERATING, VideoStatus.UPLOADING, VideoStatus.FAILED,
                                       VideoStatus.CANCELLED}),
    VideoStatus.UPLOADING: frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED}),
    VideoStatus.COMPLETED: frozenset(),
    VideoStatus.FAILED: frozenset(),
    VideoStatus.CANCELLED: frozenset(),
}


class CancelOutcome(enum.StrEnum):
    """What a cancel request found: cancelled now or before, finished already, or no such video."""

    CANCELLED = "CANCELLED"
    ALREADY_FINISHED = "ALREADY_FINISHED"
    NOT_FOUND = "NOT_FOUND"


# A request's deadline (REST Cancel-After, GraphQL deadlineSeconds): from 5 seconds to a day.
MIN_DEADLINE_SECONDS = 5
MAX_DEADLINE_SECONDS = 24 * 3600


def can_transition(current: VideoStatus, target: VideoStatus) -> bool:
    return target in _ALLOWED[current]


def ledger_effect(target: VideoStatus) -> LedgerEffect:
    """What entering ``target`` does to the video's credit hold."""
    if target is VideoStatus.COMPLETED:
        return LedgerEffect.SETTLE
    if target in (VideoStatus.FAILED, VideoStatus.CANCELLED):
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
    failure_code: FailureCode | None = None  # set when FAILED or CANCELLED


# Where a video's media lives in storage: the first segment of each key is a public folder.
MEDIA_FOLDERS = ("videos", "thumbnails")


def media_keys(uuid: str) -> tuple[str, str]:
    """The storage keys of a video's MP4 and of its thumbnail."""
    return f"videos/{uuid}.mp4", f"thumbnails/{uuid}.jpg"
