"""Recording a video's change as webhook deliveries, inside the transaction that commits the change.

The outbox pattern: the delivery rows commit (or roll back) with the status they report, so a
process dying right after the commit loses no event; the worker sends them afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.adapters.db.webhooks_store import WebhooksStore
from kensa_gql.domain.videos import Video, VideoStatus
from kensa_gql.domain.webhooks import (
    PROGRESS_INTERVAL_MS,
    DeliveryStatus,
    WebhookEvent,
    event_for,
    iso_time,
    new_event_id,
)

VideoJSON = Callable[[Video], dict[str, Any]]


def minimal_json(video: Video) -> dict[str, Any]:
    """What a delivery carries when no renderer was given (services tests)."""
    return {"uuid": video.uuid, "status": video.status.value, "progress": video.progress}


async def record_video_event(uow: UnitOfWork, *, before: VideoStatus, after: Video, now_ms: int,
                             render: VideoJSON | None = None) -> int:
    """Queue the deliveries ``before`` → ``after.status`` causes; returns how many. Call inside the
    change's transaction, before its commit."""
    event = event_for(before, after.status)
    if event is None or after.deleted:
        return 0  # a deleted video is gone for its owner: no more news of it
    store = WebhooksStore(uow)
    targets: list[tuple[int | None, str]] = [(e.id, e.url) for e in
                                             await store.subscribed_endpoints(after.user_id, event)]
    override = await store.video_webhook(after.id)
    if override is not None and event in override[1]:
        targets.append((None, override[0]))
    if not targets:
        return 0
    if event is WebhookEvent.PROGRESS and await store.progress_sent_since(after.id, now_ms - PROGRESS_INTERVAL_MS):
        return 0
    body = json.dumps({"type": event.value, "timestamp": iso_time(now_ms),
                       "data": (render or minimal_json)(after)}, separators=(",", ":"))
    await store.add_deliveries([
        {"event_id": new_event_id(), "user_id": after.user_id, "endpoint_id": endpoint_id, "video_id": after.id,
         "to_endpoint": endpoint_id is not None,
         "url": url, "event_type": event.value, "payload": body, "status": DeliveryStatus.PENDING.value,
         "attempts": 0, "next_attempt_at_ms": now_ms, "created_at_ms": now_ms}
        for endpoint_id, url in targets])
    return len(targets)
