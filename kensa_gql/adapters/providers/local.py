"""The embedded ``local`` provider: renders real H.264 MP4s, so the gateway runs offline.

A job renders in the CPU pool (never on the event loop) and is reported as finished only once
``generation_seconds`` have passed, so clients see progress in steps the way they would with a
real vendor. Jobs live in this process; a task polled after a restart is simply rendered again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.providers.render import render_video
from kensa_gql.adapters.thumbnails import make_thumbnail
from kensa_gql.domain.catalog import ModelSpec
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob, ResultFile

log = logging.getLogger(__name__)


@dataclass
class _Job:
    started: float
    fails: bool
    video: Path
    thumbnail: Path
    render: asyncio.Task[None] | None = None
    error: str | None = field(default=None)


class LocalProvider:
    name = "local"

    def __init__(self, *, work_dir: Path, pool: CpuPool, generation_seconds: float, failure_rate: float,
                 rng: random.Random | None = None) -> None:
        self._work_dir = work_dir
        self._pool = pool
        self._seconds = generation_seconds
        self._failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._jobs: dict[str, _Job] = {}
        # At least three progress reports over the generation time.
        self.poll_interval = max(0.05, generation_seconds / 6)

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True  # renders anything the catalogue allows

    async def submit(self, job: ProviderJob) -> str:
        task_id = f"local-{job.video_uuid}"
        self._start(task_id, job)
        return task_id

    async def poll(self, task_id: str, job: ProviderJob) -> JobStatus:
        state = self._jobs.get(task_id)
        if state is None:  # this process did not start it (restart): render it again
            state = self._start(task_id, job)
        elapsed = time.monotonic() - state.started
        fraction = 1.0 if self._seconds <= 0 else min(1.0, elapsed / self._seconds)
        if fraction >= 1.0 and state.fails:
            self._forget(task_id)
            return JobStatus(JobState.FAILED, error="local renderer: simulated failure (KENSA_LOCAL_FAILURE_RATE)")
        if state.render is None or not state.render.done() or fraction < 1.0:
            return JobStatus(JobState.RUNNING, progress=int(fraction * 95))
        if state.error is not None:
            self._forget(task_id)
            return JobStatus(JobState.FAILED, error=state.error)
        self._jobs.pop(task_id, None)
        return JobStatus(JobState.SUCCEEDED, progress=100,
                         result=ResultFile(path=state.video, thumbnail_path=state.thumbnail))

    async def cancel(self, task_id: str, job: ProviderJob) -> bool:
        """Forget the job; its files go as soon as its render (which cannot be interrupted) ends."""
        state = self._jobs.pop(task_id, None)
        if state is None:
            return False  # not rendered in this process, or already reported
        if state.render is None or state.render.done():
            _unlink(state)
        else:
            state.render.add_done_callback(lambda _render: _unlink(state))
        return True

    def _start(self, task_id: str, job: ProviderJob) -> _Job:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        video = self._work_dir / f"{job.video_uuid}.mp4"
        thumbnail = self._work_dir / f"{job.video_uuid}.jpg"
        seed = int(hashlib.sha256(job.video_uuid.encode()).hexdigest()[:8], 16)
        fails = self._rng.random() < self._failure_rate
        state = _Job(started=time.monotonic(), fails=fails, video=video, thumbnail=thumbnail)
        state.render = asyncio.create_task(self._render(state, job, seed), name=f"render-{job.video_uuid}")
        self._jobs[task_id] = state
        return state

    async def _render(self, state: _Job, job: ProviderJob, seed: int) -> None:
        try:
            await self._pool.run(render_video, str(state.video), job.prompt, job.duration, job.resolution,
                                 job.aspect_ratio, seed=seed)
            await self._pool.run(make_thumbnail, str(state.video), str(state.thumbnail))
        except Exception as exc:
            log.exception("local render of %s failed", job.video_uuid)
            state.error = f"local renderer failed: {type(exc).__name__}"

    def _forget(self, task_id: str) -> None:
        state = self._jobs.pop(task_id, None)
        if state is not None:
            _unlink(state)

    async def close(self) -> None:
        renders = [state.render for state in self._jobs.values() if state.render is not None]
        for render in renders:
            render.cancel()
        await asyncio.gather(*renders, return_exceptions=True)


def _unlink(state: _Job) -> None:
    state.video.unlink(missing_ok=True)
    state.thumbnail.unlink(missing_ok=True)
