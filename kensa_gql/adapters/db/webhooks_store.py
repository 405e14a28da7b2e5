"""SQL for outbound webhooks: endpoints, the account's default secret, video overrides, deliveries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from kensa_gql.adapters.db.tables import (
    video_webhooks,
    webhook_deliveries,
    webhook_endpoints,
    webhook_secrets,
)
from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.domain.webhooks import Delivery, DeliveryStatus, Endpoint, WebhookEvent

_PENDING = DeliveryStatus.PENDING.value
_FINISHED = (DeliveryStatus.SUCCEEDED.value, DeliveryStatus.FAILED.value)


def _endpoint(row: Any) -> Endpoint:
    r = row._mapping
    return Endpoint(id=r["id"], public_id=r["public_id"], user_id=r["user_id"], url=r["url"],
                    events=tuple(WebhookEvent(e) for e in json.loads(r["events"])), secret=r["secret"],
                    previous_secret=r["previous_secret"], previous_secret_until_ms=r["previous_secret_until_ms"],
                    disabled_at_ms=r["disabled_at_ms"], disabled_reason=r["disabled_reason"],
                    failing_since_ms=r["failing_since_ms"], created_at_ms=r["created_at_ms"])


_DELIVERY_COLUMNS = [*webhook_deliveries.c, webhook_endpoints.c.public_id.label("endpoint_public_id")]
_DELIVERY_FROM = webhook_deliveries.outerjoin(webhook_endpoints,
                                              webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)


def _delivery(row: Any, video_uuid: str | None = None) -> Delivery:
    r = row._mapping
    payload = r["payload"]
    if video_uuid is None:
        video_uuid = json.loads(payload).get("data", {}).get("uuid")
    return Delivery(id=r["id"], event_id=r["event_id"], user_id=r["user_id"], endpoint_id=r["endpoint_id"],
                    endpoint_public_id=r.get("endpoint_public_id"), to_endpoint=bool(r["to_endpoint"]),
                    video_uuid=video_uuid, url=r["url"],
                    event_type=r["event_type"], payload=payload, status=DeliveryStatus(r["status"]),
                    attempts=r["attempts"], next_attempt_at_ms=r["next_attempt_at_ms"],
                    last_status_code=r["last_status_code"], last_response=r["last_response"],
                    last_error=r["last_error"], created_at_ms=r["created_at_ms"],
                    delivered_at_ms=r["delivered_at_ms"])


class WebhooksStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- endpoints ------------------------------------------------------------------------------
    async def add_endpoint(self, *, public_id: str, user_id: int, url: str, events: Sequence[WebhookEvent],
                           secret: str, now_ms: int) -> Endpoint:
        result = await self._uow.conn.execute(insert(webhook_endpoints).values(
            public_id=public_id, user_id=user_id, url=url, events=json.dumps(list(events)), secret=secret,
            created_at_ms=now_ms).returning(*webhook_endpoints.c))
        return _endpoint(result.one())

    async def endpoints_of(self, user_id: int) -> list[Endpoint]:
        rows = await self._uow.conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.user_id == user_id)
                                            .order_by(webhook_endpoints.c.id))
        return [_endpoint(r) for r in rows]

    async def count_endpoints(self, user_id: int) -> int:
        return int((await self._uow.conn.execute(select(func.count()).select_from(webhook_endpoints)
                                                 .where(webhook_endpoints.c.user_id == user_id))).scalar_one())

    async def endpoint_owned(self, public_id: str, user_id: int) -> Endpoint | None:
        row = (await self._uow.conn.execute(select(webhook_endpoints).where(
            webhook_endpoints.c.public_id == public_id, webhook_endpoints.c.user_id == user_id))).first()
        return None if row is None else _endpoint(row)

    async def endpoint_by_id(self, endpoint_id: int) -> Endpoint | None:
        row = (await self._uow.conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))).first()
        return None if row is None else _endpoint(row)

    async def update_endpoint(self, endpoint_id: int, **values: Any) -> Endpoint:
        if "events" in values:
            values["events"] = json.dumps(list(values["events"]))
        result = await self._uow.conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                                              .values(**values).returning(*webhook_endpoints.c))
        return _endpoint(result.one())

    async def delete_endpoint(self, endpoint_id: int, now_ms: int) -> None:
        # Its waiting deliveries have nowhere to go any more; the log keeps them, FAILED.
        await self._uow.conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == _PENDING)
            .values(status=DeliveryStatus.FAILED.value, next_attempt_at_ms=None, last_error="endpoint deleted"))
        await self._uow.conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
                                     .values(endpoint_id=None))
        await self._uow.conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    async def subscribed_endpoints(self, user_id: int, event: WebhookEvent) -> list[Endpoint]:
        """The user's enabled endpoints that take ``event``."""
        rows = await self._uow.conn.execute(select(webhook_endpoints).where(
            webhook_endpoints.c.user_id == user_id, webhook_endpoints.c.disabled_at_ms.is_(None)))
        return [e for e in map(_endpoint, rows) if event in e.events]

    # -- the account's default secret ---------------------------------------------------------------
    async def default_secret(self, user_id: int) -> str | None:
        return (await self._uow.conn.execute(
            select(webhook_secrets.c.secret).where(webhook_secrets.c.user_id == user_id))).scalar_one_or_none()

    async def ensure_default_secret(self, user_id: int, secret: str, now_ms: int) -> str:
        """The account's secret, made now with ``secret`` if it has none (a racing maker's wins)."""
        existing = await self.default_secret(user_id)
        if existing is not None:
            return existing
        try:
            async with self._uow.conn.begin_nested():
                await self._uow.conn.execute(insert(webhook_secrets).values(
                    user_id=user_id, secret=secret, created_at_ms=now_ms))
        except IntegrityError:
            pass
        found = await self.default_secret(user_id)
        assert found is not None
        return found

    # -- a video's own webhook --------------------------------------------------------------------
    async def set_video_webhook(self, video_id: int, url: str, events: Sequence[WebhookEvent]) -> None:
        await self._uow.conn.execute(insert(video_webhooks).values(video_id=video_id, url=url,
                                                                   events=json.dumps(list(events))))

    async def video_webhook(self, video_id: int) -> tuple[str, tuple[WebhookEvent, ...]] | None:
        row = (await self._uow.conn.execute(
            select(video_webhooks.c.url, video_webhooks.c.events).where(video_webhooks.c.video_id == video_id))).first()
        return None if row is None else (row.url, tuple(WebhookEvent(e) for e in json.loads(row.events)))

    # -- deliveries -------------------------------------------------------------------------------
    async def add_deliveries(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._uow.conn.execute(insert(webhook_deliveries), rows)

    async def progress_sent_since(self, video_id: int, since_ms: int) -> bool:
        """Whether a video.progress of this video was recorded after ``since_ms``."""
        c = webhook_deliveries.c
        row = (await self._uow.conn.execute(select(c.id).where(
            c.video_id == video_id, c.event_type == WebhookEvent.PROGRESS.value, c.created_at_ms > since_ms)
            .limit(1))).first()
        return row is not None

    async def claim_due(self, owner: str, *, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries nobody holds (or whose holder's lease ran out)."""
        c = webhook_deliveries.c
        due = and_(c.status == _PENDING, c.next_attempt_at_ms <= now_ms,
                   or_(c.lease_until_ms.is_(None), c.lease_until_ms < now_ms))
        pick = select(c.id).where(due).order_by(c.next_attempt_at_ms).limit(limit)
        if self._uow.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        result = await self._uow.conn.execute(
            update(webhook_deliveries).where(c.id.in_(pick.scalar_subquery()), due)
            .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms).returning(*webhook_deliveries.c))
        return [_delivery(r) for r in result]

    async def renew_leases(self, owner: str, ids: list[int], until_ms: int) -> None:
        if ids:
            await self._uow.conn.execute(update(webhook_deliveries).where(
                webhook_deliveries.c.id.in_(ids), webhook_deliveries.c.lease_owner == owner)
                .values(lease_until_ms=until_ms))

    async def record_attempt(self, delivery_id: int, owner: str, **values: Any) -> bool:
        """Write an attempt's outcome while we still hold the lease (a fencing check); frees it."""
        c = webhook_deliveries.c
        result = await self._uow.conn.execute(update(webhook_deliveries).where(
            c.id == delivery_id, c.lease_owner == owner, c.status == _PENDING)
            .values(attempts=c.attempts + 1, lease_owner=None, lease_until_ms=None, **values))
        return result.rowcount == 1

    async def delivery_owned(self, public_event_id: str, user_id: int) -> Delivery | None:
        row = (await self._uow.conn.execute(select(*_DELIVERY_COLUMNS).select_from(_DELIVERY_FROM).where(
            webhook_deliveries.c.event_id == public_event_id, webhook_deliveries.c.user_id == user_id))).first()
        return None if row is None else _delivery(row)

    async def deliveries_of(self, user_id: int, *, endpoint_id: int | None, status: DeliveryStatus | None,
                            offset: int, limit: int) -> tuple[list[Delivery], int]:
        c = webhook_deliveries.c
        where = [c.user_id == user_id]
        if endpoint_id is not None:
            where.append(c.endpoint_id == endpoint_id)
        if status is not None:
            where.append(c.status == status.value)
        rows = await self._uow.conn.execute(select(*_DELIVERY_COLUMNS).select_from(_DELIVERY_FROM).where(*where)
                                            .order_by(c.id.desc()).offset(offset).limit(limit))
        total = (await self._uow.conn.execute(select(func.count()).select_from(webhook_deliveries)
                                              .where(*where))).scalar_one()
        return [_delivery(r) for r in rows], int(total)

    async def prune_finished(self, *, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` deliveries that succeeded or were given up on, made before
        ``before_ms``, oldest first; how many went. Waiting ones are never touched."""
        c = webhook_deliveries.c
        # By id, which grows with the creation time: the old rows are the first the scan meets.
        oldest = (select(c.id).where(c.status.in_(_FINISHED), c.created_at_ms < before_ms)
                  .order_by(c.id).limit(limit))
        result = await self._uow.conn.execute(delete(webhook_deliveries).where(
            c.id.in_(oldest.scalar_subquery()), c.status.in_(_FINISHED)))
        return int(result.rowcount or 0)

    async def redeliver(self, delivery_id: int, now_ms: int) -> None:
        """Send again at once with the same id, whatever its state; the attempt count goes on."""
        await self._uow.conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                                     .values(status=_PENDING, next_attempt_at_ms=now_ms, lease_owner=None,
                                             lease_until_ms=None, created_at_ms=now_ms))
