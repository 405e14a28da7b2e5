"""The Redis event channel: one supervised pub/sub subscription per process, and a publisher.

Written on ``redis.asyncio`` rather than broadcaster 0.3.1's RedisBackend, which with redis-py 8
never delivers to the first subscription, lets its listener die silently when Redis goes away
(subscribers then hang forever, encode/broadcaster#144) and never resubscribes. Here one task owns
the subscription for the life of the process: it waits for Redis's confirmation before reporting
itself subscribed, pings when the line is quiet so a frozen server is noticed too, and on any
failure reconnects with capped, jittered backoff. Every (re)subscription is reported to the
owner, because pub/sub does not replay what was published while nobody listened: the owner
re-reads the truth from the database (see ``VideoEvents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)

Deliver = Callable[[str], None]
Subscribed = Callable[[], None]


class ChannelUnavailable(Exception):
    """The event channel could not subscribe in time at start-up."""


class RedisChannel:
    """Publishes to and listens on one Redis pub/sub channel, reconnecting whenever it is lost."""

    def __init__(self, url: str, channel: str, *, ping_every: float = 5.0, reply_timeout: float = 5.0,
                 max_backoff: float = 5.0) -> None:
        self._url = url
        self._channel = channel
        self._ping_every = ping_every
        self._reply_timeout = reply_timeout
        self._max_backoff = max_backoff
        # One quick retry lets a publish ride over a pooled connection that a Redis restart killed;
        # more would stall the runner (which publishes after each commit) during an outage.
        self._publisher = redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=reply_timeout, socket_timeout=reply_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.subscriptions = 0  # how many times the subscription was (re)established

    @property
    def healthy(self) -> bool:
        return self._subscribed.is_set()

    async def start(self, deliver: Deliver, subscribed: Subscribed, *, within: float = 10.0) -> None:
        """Subscribe, returning once Redis confirmed it; the subscription is then kept up until stop."""
        self._task = asyncio.create_task(self._supervise(deliver, subscribed), name="redis-events")
        try:
            await asyncio.wait_for(self._subscribed.wait(), within)
        except TimeoutError:
            await self.stop()
            raise ChannelUnavailable(f"could not subscribe to Redis within {within:g} s") from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._publisher.aclose()

    async def publish(self, message: str) -> None:
        await self._publisher.publish(self._channel, message)

    async def _supervise(self, deliver: Deliver, subscribed: Subscribed) -> None:
        failures = 0
        while True:
            before = self.subscriptions
            try:
                await self._listen(deliver, subscribed)
            except (RedisError, OSError, TimeoutError) as exc:
                # The class only: the message may name the host; the URL (and its password) never.
                if self.subscriptions > before:
                    log.warning("lost the Redis event subscription (%s); reconnecting", type(exc).__name__)
            # A connection that got as far as subscribing starts the backoff over.
            failures = 1 if self.subscriptions > before else failures + 1
            delay = min(self._max_backoff, 0.05 * 2 ** min(failures, 10))
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # jitter, not security

    async def _listen(self, deliver: Deliver, subscribed: Subscribed) -> None:
        client = redis.asyncio.Redis.from_url(
            self._url, decode_responses=True, socket_connect_timeout=self._reply_timeout,
            socket_keepalive=True, retry=Retry(ExponentialBackoff(), 0))
        pubsub = client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(self._channel), self._reply_timeout)
            await self._confirmed(pubsub)
            self.subscriptions += 1
            self._subscribed.set()
            log.info("subscribed to Redis events (subscription %d)", self.subscriptions)
            subscribed()
            last_heard = time.monotonic()
            pinged = False
            while True:
                message = await pubsub.get_message(timeout=min(1.0, self._ping_every))
                now = time.monotonic()
                if message is not None:
                    last_heard, pinged = now, False
                    if message.get("type") == "message":
                        self._deliver_safely(deliver, message)
                    continue
                quiet = now - last_heard
                if quiet > self._ping_every + self._reply_timeout and pinged:
                    raise RedisTimeoutError("Redis did not answer a ping")
                if quiet > self._ping_every and not pinged:
                    await asyncio.wait_for(pubsub.ping(), self._reply_timeout)
                    pinged = True
        finally:
            self._subscribed.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)

    async def _confirmed(self, pubsub: Any) -> None:
        """Wait for Redis to confirm the SUBSCRIBE: only then will publishes reach us."""
        deadline = time.monotonic() + self._reply_timeout
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if message is not None and message.get("type") == "subscribe":
                return
        raise RedisTimeoutError("Redis did not confirm the subscription")

    @staticmethod
    def _deliver_safely(deliver: Deliver, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, str):
            return
        try:
            deliver(data)
        except Exception:
            log.exception("delivering a Redis event failed")
