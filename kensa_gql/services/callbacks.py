"""Vendor callbacks: a hint that a task changed, never a source of truth."""

from __future__ import annotations

from collections.abc import Callable

from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.errors import NotFound
from kensa_gql.domain.ports import CallbackVerifier
from kensa_gql.services.deps import Deps


async def receive_callback(provider: str, video_uuid: str, token: str, *, deps: Deps,
                           verifier: CallbackVerifier, nudge: Callable[[int], None]) -> bool:
    """Check the callback's token and have the runner re-fetch the task from the vendor now.

    Returns whether a live task was nudged. Tasks that are finished, unknown or now served by
    another provider are ignored: the callback's body is never read, so a duplicate, late or
    out-of-order delivery can at most cause one extra poll, and settling stays the runner's job.
    """
    if not verifier.verify(provider, video_uuid, token):
        raise NotFound("callback")
    async with deps.db.reading() as uow:
        task = await VideosStore(uow).task_by_video_uuid(video_uuid)
    if task is None or task.provider != provider:
        return False
    nudge(task.video_id)
    return True
