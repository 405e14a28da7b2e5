"""The ports: what the services need from the outside world, as Protocols."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.videos import FailureCode, Video


@dataclass(frozen=True, slots=True)
class ProviderJob:
    """What a provider is asked to make; everything is already validated and normalised."""

    video_uuid: str
    model: str
    prompt: str
    duration: int
    resolution: str
    aspect_ratio: str
    start_image_url: str | None = None
    callback_url: str | None = None

    @classmethod
    def for_video(cls, video: Video) -> ProviderJob:
        """The job a video stands for (the runner adds its callback URL where a vendor takes one)."""
        return cls(video_uuid=video.uuid, model=video.model, prompt=video.prompt, duration=video.duration,
                   resolution=video.resolution or "", aspect_ratio=video.aspect_ratio,
                   start_image_url=video.start_image_url)


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ResultFile:
    """Where a finished video can be taken from: a local file, or a URL (with headers) to download."""

    path: Path | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    thumbnail_path: Path | None = None
    thumbnail_url: str | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    state: JobState
    progress: int | None = None      # 0..100 as the vendor reports it, None when it has none
    result: ResultFile | None = None  # set when SUCCEEDED
    error: str | None = None          # the vendor's message when FAILED
    retryable: bool = False           # FAILED for a passing reason (overload, vendor timeout): fail over
    failure: FailureCode | None = None  # FAILED: the vendor's documented reason, mapped (None: PROVIDER_ERROR)


class VideoProvider(Protocol):
    """One video vendor (or the embedded renderer) behind one interface."""

    name: str
    poll_interval: float

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        """Whether this provider can make exactly this combination."""
        ...

    async def submit(self, job: ProviderJob) -> str:
        """Start the job; return the provider's task id. Raises ProviderError."""
        ...

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        """Report the job's state. Raises ProviderError."""
        ...


@runtime_checkable
class Cancellable(Protocol):
    """A provider whose vendor documents a cancel call (optional: not every vendor has one)."""

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        """Ask the vendor to stop the task; True if it accepted, False if it could not (already
        running or finished). Raises ProviderError when the vendor cannot be asked."""
        ...


class CallbackVerifier(Protocol):
    """Checks the per-task token in a vendor's callback URL."""

    def verify(self, provider: str, video_uuid: str, token: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    url: str
    size: int


class Storage(Protocol):
    """Where finished videos and thumbnails live, served to clients by URL."""

    async def check(self) -> None:
        """At start-up: fail (SettingsError) when the store cannot be reached or written."""
        ...

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        """Store the file at ``key`` (the source is consumed once stored; kept when this raises)
        and return its public URL and size. Raises StorageUnavailable when it cannot be written."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if it is there (it is no longer published). Raises StorageUnavailable."""
        ...

    async def check_writable(self) -> None:
        """For readiness: raise StorageUnavailable, naming what cannot be written, unless a put would work."""
        ...


class EventPublisher(Protocol):
    """Tells subscribers a video changed; called only after the change is committed."""

    async def video_changed(self, video: Video) -> None: ...

    async def queue_moved(self) -> None:
        """Videos left the queue at its head (a runner claimed them): the places of those behind moved."""
