"""Deadlines: a video not finished by the deadline its request set is stopped like a cancel.

It ends FAILED with DEADLINE_EXCEEDED and its credits are released. Every process (API or worker)
sweeps, so a deadline holds with the runner busy, stopped or gone; nothing needs to read the
video first. Sweeps in several processes cannot stop a video twice: the stop is a compare-and-set
on its status (services/videos.py ``stop_in``).
"""

from __future__ import annotations

import asyncio
import logging

from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import InvalidTransition, Unavailable
from kensa_gql.domain.videos import FailureCode, VideoStatus
from kensa_gql.services.deps import Deps
from kensa_gql.services.videos import after_stop, stop_in

log = logging.getLogger(__name__)

SWEEP_BATCH = 100


async def expire_deadlines(*, deps: Deps, now: int | None = None) -> int:
    """Stop every video in flight whose deadline has passed; returns how many this call stopped."""
    at = now_ms() if now is None else now
    async with deps.db.reading() as uow:
        due = await VideosStore(uow).past_deadline(at, SWEEP_BATCH)
    expired = 0
    for video_id in due:
        async with deps.db.writing() as uow:
            video = await VideosStore(uow).get_by_id(video_id)
            if video is None or video.status.is_terminal:
                continue
            try:
                stopped = await stop_in(uow, video, status=VideoStatus.FAILED, failure=FailureCode.DEADLINE_EXCEEDED,
                                        message="not finished by its deadline", now=at,
                                        render=deps.video_json)
            except InvalidTransition:
                continue  # it moved meanwhile (finished, or another sweep was first); the next sweep sees it
            await uow.commit()
        log.info("video %s passed its deadline and was stopped", stopped.video.uuid)
        await after_stop(stopped, deps=deps)
        expired += 1
    return expired


async def sweep_deadlines(*, deps: Deps, interval: float) -> None:
    """Expire due deadlines every ``interval`` seconds until cancelled; a database outage only delays it."""
    while True:
        try:
            while await expire_deadlines(deps=deps) == SWEEP_BATCH:
                pass  # a full batch: more may be due
        except Unavailable as exc:
            log.warning("the deadline sweep could not reach the database: %s; retrying", exc.message)
        except Exception:
            log.exception("the deadline sweep failed; retrying")
        await asyncio.sleep(interval)
