"""The webhook sender loop: claims due deliveries with leases, sends them, records each attempt.

At least once: a delivery is leased before it is sent and its outcome written after, under a
fencing check on the lease. A worker that dies mid-send leaves the lease to run out, and any
worker sends the same event (same ``webhook-id``) again. Runs beside the task runner in
``kensa-gql worker`` and ``serve`` (unless ``--no-worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from kensa_gql import metrics
from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.webhooks_store import WebhooksStore
from kensa_gql.adapters.webhook_sender import Attempt, WebhookSender
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import Unavailable
from kensa_gql.domain.webhooks import DISABLE_AFTER_MS, Delivery, DeliveryStatus, RetryPolicy

log = logging.getLogger(__name__)

GONE = 410
REFUSED = "refused:"  # how WebhookSender's Attempt.error starts when the URL guard refused to send


@dataclass(frozen=True, slots=True)
class WebhookWorkerConfig:
    policy: RetryPolicy
    claim_interval: float = 0.5
    claim_batch: int = 16
    timeout: float = 15.0  # per send
    lease_seconds: float = 30.0  # beyond the send's timeout: a dead worker's deliveries wait this long
    # Finished deliveries (and their log) are kept this long, then deleted, checked this often.
    retention_ms: int = 30 * 24 * 3600 * 1000
    prune_interval: float = 3600.0
    prune_batch: int = 1000

    @property
    def lease_ms(self) -> int:
        return int((self.timeout + self.lease_seconds) * 1000)


class WebhookWorker:
    def __init__(self, db: Database, sender: WebhookSender, config: WebhookWorkerConfig,
                 owner: str | None = None) -> None:
        self._db = db
        self._sender = sender
        self._config = config
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._prune_at = 0.0  # monotonic: the first round prunes

    async def prune(self) -> int:
        """Delete finished deliveries older than the retention, a batch per transaction; how many."""
        before = now_ms() - self._config.retention_ms
        pruned = 0
        while True:
            async with self._db.writing() as uow:
                count = await WebhooksStore(uow).prune_finished(before_ms=before, limit=self._config.prune_batch)
                await uow.commit()
            pruned += count
            if count < self._config.prune_batch:
                break
        if pruned:
            log.info("webhook deliveries pruned: %d finished before the %d-day retention",
                     pruned, self._config.retention_ms // 86_400_000)
        return pruned

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled; a database outage only pauses it."""
        failures = 0
        while True:
            try:
                if time.monotonic() >= self._prune_at:
                    await self.prune()
                    self._prune_at = time.monotonic() + self._config.prune_interval
                sent = await self.send_due()
                failures = 0
            except Exception as exc:
                failures += 1
                if isinstance(exc, Unavailable):
                    log.warning("sending webhooks failed (%d in a row): %s; retrying", failures, exc.message)
                else:
                    log.exception("sending webhooks failed (%d in a row); retrying", failures)
                await asyncio.sleep(min(30.0, self._config.claim_interval * 2 ** min(failures, 8)))
                continue
            if sent:
                continue  # there may be more due at once
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.claim_interval)

    async def send_due(self) -> int:
        """One round: claim a batch of due deliveries, send them together, record each outcome."""
        async with self._db.writing() as uow:
            claimed = await WebhooksStore(uow).claim_due(self.owner, now_ms=now_ms(), lease_ms=self._config.lease_ms,
                                                         limit=self._config.claim_batch)
            await uow.commit()
        if claimed:
            await asyncio.gather(*(self._deliver(d) for d in claimed))
        return len(claimed)

    async def _deliver(self, delivery: Delivery) -> None:
        async with self._db.reading() as uow:
            store = WebhooksStore(uow)
            endpoint = None if delivery.endpoint_id is None else await store.endpoint_by_id(delivery.endpoint_id)
            default = None if delivery.to_endpoint else await store.default_secret(delivery.user_id)
        now = now_ms()
        if delivery.to_endpoint and endpoint is None:
            await self._record(delivery, Attempt(None, None, "endpoint deleted"), give_up=True)
            return
        if endpoint is not None and endpoint.disabled_at_ms is not None:
            await self._record(delivery, Attempt(None, None, "endpoint disabled"), give_up=True)
            return
        keys = endpoint.signing_secrets(now) if endpoint is not None else ([default] if default else [])
        if not keys:
            await self._record(delivery, Attempt(None, None, "no signing secret"), give_up=True)
            return
        # An endpoint's URL may have changed since the event: its deliveries follow it.
        url = endpoint.url if endpoint is not None else delivery.url
        started = time.perf_counter()
        attempt = await self._sender.send(url, event_id=delivery.event_id, payload=delivery.payload, secrets=keys)
        if attempt.status_code is not None or not (attempt.error or "").startswith(REFUSED):
            metrics.WEBHOOK_DURATION.observe(time.perf_counter() - started)
        await self._record(delivery, attempt)

    async def _record(self, delivery: Delivery, attempt: Attempt, *, give_up: bool = False) -> None:
        now = now_ms()
        outcome = "succeeded"
        values: dict[str, object] = {"last_status_code": attempt.status_code, "last_response": attempt.response,
                                     "last_error": attempt.error}
        if attempt.ok:
            values.update(status=DeliveryStatus.SUCCEEDED.value, next_attempt_at_ms=None, delivered_at_ms=now)
        else:
            # 410 Gone: the receiver says the endpoint no longer exists (Standard Webhooks): stop now.
            give_up = give_up or attempt.status_code == GONE
            later = None if give_up else self._config.policy.next_attempt(
                attempts=delivery.attempts + 1, created_at_ms=delivery.created_at_ms, now_ms=now)
            if later is None:
                values.update(status=DeliveryStatus.FAILED.value, next_attempt_at_ms=None)
                outcome = "failed"
            else:
                values.update(next_attempt_at_ms=later)
                outcome = "retrying"
            if attempt.status_code is None and (attempt.error or "").startswith(REFUSED):
                outcome = "refused"
            log.info("webhook %s to %s failed (%s)", delivery.event_id, delivery.url,
                     attempt.error or f"HTTP {attempt.status_code}")
        async with self._db.writing() as uow:
            store = WebhooksStore(uow)
            if not await store.record_attempt(delivery.id, self.owner, **values):
                return  # another worker took it over after our lease ran out: its outcome stands
            if delivery.endpoint_id is not None and attempt.status_code == GONE:
                await store.update_endpoint(delivery.endpoint_id, disabled_at_ms=now,
                                            disabled_reason="the receiver answered 410 Gone")
            elif delivery.endpoint_id is not None and not give_up:
                await self._track_endpoint(store, delivery.endpoint_id, ok=attempt.ok, now=now)
            await uow.commit()
        metrics.webhook_delivery(outcome)

    async def _track_endpoint(self, store: WebhooksStore, endpoint_id: int, *, ok: bool, now: int) -> None:
        endpoint = await store.endpoint_by_id(endpoint_id)
        if endpoint is None:
            return
        if ok:
            if endpoint.failing_since_ms is not None:
                await store.update_endpoint(endpoint_id, failing_since_ms=None)
        elif endpoint.failing_since_ms is None:
            await store.update_endpoint(endpoint_id, failing_since_ms=now)
        elif now - endpoint.failing_since_ms >= DISABLE_AFTER_MS and endpoint.disabled_at_ms is None:
            log.warning("webhook endpoint %s disabled: failing since %d", endpoint.public_id, endpoint.failing_since_ms)
            await store.update_endpoint(endpoint_id, disabled_at_ms=now,
                                        disabled_reason="every delivery failed for 5 days")
