"""The delivery log is kept ``KENSA_WEBHOOK_RETENTION_DAYS``: the webhook worker deletes finished
deliveries older than that, in batches, and never one still waiting to be sent."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import webhook_deliveries
from kensa_gql.adapters.db.webhooks_store import WebhooksStore
from kensa_gql.adapters.webhook_sender import WebhookSender, WebhookUrlGuard
from kensa_gql.clock import now_ms
from kensa_gql.domain.webhooks import DeliveryStatus, RetryPolicy
from kensa_gql.webhook_worker import WebhookWorker, WebhookWorkerConfig

DAY = 86_400_000


def delivery(n: int, user_id: int, status: DeliveryStatus, age_days: float) -> dict[str, Any]:
    return {"event_id": f"msg_retention_{n}", "user_id": user_id, "endpoint_id": None, "video_id": None,
            "to_endpoint": False, "url": "https://receiver.example/hook", "event_type": "video.completed",
            "payload": "{}", "status": status.value, "attempts": 1, "next_attempt_at_ms": None,
            "created_at_ms": now_ms() - int(age_days * DAY)}


async def test_finished_deliveries_older_than_the_retention_are_deleted_in_batches(db: Database,
                                                                                    make_user: Any) -> None:
    # given deliveries of every state (waiting ones too), some past the 30 days and some within them
    user = await make_user()
    rows = [delivery(n, user.user_id, status, age)
            for n, (status, age) in enumerate([(s, a) for a in (45, 31, 29, 1) for s in DeliveryStatus] * 2)]
    async with db.writing() as uow:
        await WebhooksStore(uow).add_deliveries(rows)
        await uow.commit()
    # when the worker prunes, two at a time
    sender = WebhookSender(WebhookUrlGuard(), timeout=1.0)
    worker = WebhookWorker(db, sender, WebhookWorkerConfig(policy=RetryPolicy(), retention_ms=30 * DAY,
                                                           prune_batch=2))
    pruned = await worker.prune()
    # then exactly the finished ones past 30 days are gone, over as many batches as it took
    async with db.reading() as uow:
        left = {r.event_id for r in await uow.conn.execute(select(webhook_deliveries.c.event_id))}
    gone = {r["event_id"] for r in rows if r["status"] != DeliveryStatus.PENDING.value
            and r["created_at_ms"] < now_ms() - 30 * DAY}
    assert pruned == len(gone) == 8
    assert left == {r["event_id"] for r in rows} - gone
    # and a second round finds nothing more to do
    assert await worker.prune() == 0


async def test_the_running_worker_prunes_on_its_first_round(db: Database, make_user: Any) -> None:
    user = await make_user()
    async with db.writing() as uow:
        await WebhooksStore(uow).add_deliveries([delivery(1, user.user_id, DeliveryStatus.SUCCEEDED, 40)])
        await uow.commit()
    worker = WebhookWorker(db, WebhookSender(WebhookUrlGuard(), timeout=1.0),
                           WebhookWorkerConfig(policy=RetryPolicy(), claim_interval=0.05))
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):  # up to 5 s; the first round prunes before it claims anything
            async with db.reading() as uow:
                if (await uow.conn.execute(select(webhook_deliveries.c.id))).first() is None:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the 40-day-old delivery is still there")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
