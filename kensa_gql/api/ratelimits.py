"""Rate limits per API key (its user) and per client address, with the ``limits`` library.

Three budgets per minute (settings, docs/operations.md): ``generate`` (REST ``POST
/api/v1/video/generate``, GraphQL ``generateVideo``), ``requests`` (every other call of a signed-in
user: REST, GraphQL over HTTP, each WebSocket operation) and ``anonymous`` (calls without a valid
key, per client address). A user's own budgets (``users set-limits``) ride on their Principal,
so they cost no lookup of their own.

The HTTP check, ``admit``, runs for every REST and GraphQL request before the front door or
Starlette's router (in the request context, or as the ``Throttle`` layer under CORS): it
answers 429 itself (the REST envelope or a GraphQL error, ``RATE_LIMITED``, with
``Retry-After``) and adds the IETF httpapi draft's
``RateLimit-Policy`` and ``RateLimit`` headers to every response it lets through. GraphQL's
``generateVideo`` (over HTTP or a socket) and socket operations are checked where they run,
through ``check_generate`` and ``check_operation``.

Strategy: fixed window. One counter per identity and budget (an increment and a read of its
expiry), against a timestamp per request for the moving window: the cheap one on the hot path. A
client may burst up to twice a budget across a window boundary; the budgets are sized for that.
In memory, ``LeanMemoryStorage`` replaces limits' own bookkeeping (a lock per key, and a task per
hit sweeping every key) by expiry on read and a sweep once a window: the loop has one thread.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
from typing import Any

import orjson
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kensa_gql import metrics
from kensa_gql.api import caller
from kensa_gql.domain.errors import RateLimited, Unauthenticated, Unavailable
from kensa_gql.services.accounts import Principal, bearer_token
from kensa_gql.settings import Settings

log = logging.getLogger(__name__)

GENERATE, REQUESTS, ANONYMOUS = "generate", "requests", "anonymous"
_GENERATE_PATH = "/api/v1/video/generate"
_WINDOW = 60


class LeanMemoryStorage(MemoryStorage):
    """limits' in-process counters for the fixed window, without a task or lock per hit."""

    def __init__(self) -> None:
        super().__init__()
        self._sweep_at = time.time() + _WINDOW

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.count(key, expiry, amount)[0]

    def count(self, key: str, expiry: float, amount: int = 1, now: float | None = None) -> tuple[int, float]:
        """Add ``amount`` to the key's window; its count and when the window ends. No await: the hot path's."""
        if now is None:
            now = time.time()
        if now >= self._sweep_at:  # forget windows nobody touched again: memory stays bounded
            self._sweep_at = now + _WINDOW
            for gone in [k for k, at in self.expirations.items() if at <= now]:
                self.storage.pop(gone, None)
                del self.expirations[gone]
        value = self.storage.get(key, 0)
        if value == 0 or self.expirations.get(key, now) <= now:
            value = 0
            self.expirations[key] = now + expiry
        value += amount
        self.storage[key] = value
        return value, self.expirations[key]

    async def get(self, key: str) -> int:
        if self.expirations.get(key, 0.0) <= time.time():
            return 0
        return self.storage.get(key, 0)


class Decision:
    """One hit's outcome: allowed or not, and what the headers tell the client.

    A plain slotted class, not a frozen dataclass: one is made per request, and a frozen
    dataclass sets each field through ``object.__setattr__``.
    """

    __slots__ = ("allowed", "limit", "policy", "remaining", "reset")

    def __init__(self, allowed: bool, policy: str, limit: int, remaining: int, reset: int) -> None:
        self.allowed = allowed
        self.policy = policy
        self.limit = limit
        self.remaining = remaining
        self.reset = reset  # seconds until the window starts again

    @property
    def retry_after(self) -> int:
        return max(1, self.reset)

    def headers(self) -> list[tuple[bytes, bytes]]:
        # draft-ietf-httpapi-ratelimit-headers (-08 on): a named policy as a structured-field item.
        return [_policy_header(self.policy, self.limit),
                (b"ratelimit", b'"%s";r=%d;t=%d' % (self.policy.encode(), self.remaining, self.reset))]


@functools.lru_cache(maxsize=1024)
def _policy_header(policy: str, limit: int) -> tuple[bytes, bytes]:
    """``RateLimit-Policy``: the same bytes for every request of a budget, made once."""
    return b"ratelimit-policy", f'"{policy}";q={limit};w={_WINDOW}'.encode()


class RateLimiter:
    """The budgets and their counters: in this process, or in Redis shared by every replica."""

    def __init__(self, settings: Settings) -> None:
        url = settings.broadcast_url
        self.storage: Storage
        if url.startswith(("redis://", "rediss://")):
            # redis-py (already a dependency for events) rather than limits' default coredis. The
            # prefix names the deployment by its database: replicas share it, others do not.
            deployment = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
            self.storage = RedisStorage("async+" + url, implementation="redispy",
                                        key_prefix=f"kensa-limits-{deployment}")
        else:
            self.storage = LeanMemoryStorage()
        self.defaults = {GENERATE: settings.rate_limit_generate_per_minute,
                         REQUESTS: settings.rate_limit_requests_per_minute,
                         ANONYMOUS: settings.rate_limit_anonymous_per_minute}
        self._keys: dict[tuple[str, int, str], str] = {}
        self._memory = self.storage if isinstance(self.storage, LeanMemoryStorage) else None
        self._warn_at = 0.0
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    def budget(self, policy: str, principal: Principal | None) -> int:
        own = None
        if principal is not None:
            own = principal.generate_per_minute if policy == GENERATE else principal.requests_per_minute
        return self.defaults[policy] if own is None else own

    def hit_now(self, policy: str, identity: str, limit: int) -> Decision | None:
        """``hit`` without an await when the counters are in this process; None when they are in Redis."""
        memory = self._memory
        if memory is None:
            return None
        key = self._keys.get((policy, limit, identity))
        if key is None:
            key = self._key(policy, limit, identity)
        # limits' FixedWindowRateLimiter.hit and get_window_stats in one call (the storage's own
        # methods are wrapped for errors: a layer per call).
        now = time.time()
        count, expires = memory.count(key, _WINDOW, now=now)
        reset = math.ceil(expires - now)
        return Decision(count <= limit, policy, limit, max(0, limit - count), min(max(0, reset), _WINDOW))

    async def hit(self, policy: str, identity: str, limit: int) -> Decision:
        decided = self.hit_now(policy, identity, limit)
        if decided is not None:
            return decided
        key = self._keys.get((policy, limit, identity)) or self._key(policy, limit, identity)
        try:  # Redis: limits' two reads
            count = await self.storage.incr(key, _WINDOW)
            expires = await self.storage.get_expiry(key)
        except Exception as exc:
            # Redis away: serve unlimited rather than fail every request; say so now and then.
            now = time.monotonic()
            if now >= self._warn_at:
                self._warn_at = now + 10
                log.warning("rate limits not enforced: their Redis storage failed (%s)", exc)
            return Decision(True, policy, limit, limit, _WINDOW)
        reset = math.ceil(expires - time.time())
        return Decision(count <= limit, policy, limit, max(0, limit - count), min(max(0, reset), _WINDOW))

    def _key(self, policy: str, limit: int, identity: str) -> str:
        if len(self._keys) > 100_000:  # identities come and go: a cache, never a leak
            self._keys.clear()
        item = RateLimitItemPerMinute(limit, namespace=policy)
        key = self._keys[(policy, limit, identity)] = item.key_for(identity)
        return key

    async def hit_user(self, policy: str, principal: Principal) -> Decision:
        return await self.hit(policy, str(principal.user_id), self.budget(policy, principal))

    def hit_user_now(self, policy: str, principal: Principal) -> Decision | None:
        return self.hit_now(policy, str(principal.user_id), self.budget(policy, principal))

    def client_address(self, scope: Scope) -> str:
        """The peer's address; behind a trusted proxy, the last X-Forwarded-For hop it did not add."""
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._proxies or not self._trusted(peer):
            return peer
        forwarded = ",".join(v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for")
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)


def refused(decision: Decision) -> RateLimited:
    metrics.RATE_LIMITED.labels(decision.policy).inc()
    return RateLimited(f"rate limit exceeded: {decision.limit} {decision.policy} per minute; "
                       f"retry after {decision.retry_after} s", retry_after=decision.retry_after)


def formatted(error: RateLimited) -> dict[str, Any]:
    """The GraphQL error for a refused operation, as both WebSocket protocols send it."""
    return {"message": error.message, "extensions": {"code": error.code, "retryAfter": error.retry_after}}


def _limiter(scope: Scope) -> RateLimiter | None:
    limiter: RateLimiter | None = getattr(scope["app"].state, "limiter", None)
    return limiter


async def check_generate(scope: Scope, principal: Principal) -> None:
    """GraphQL's generateVideo: raises RateLimited when the user's generate budget is spent."""
    limiter = _limiter(scope)
    if limiter is not None:
        decision = await limiter.hit_user(GENERATE, principal)
        if not decision.allowed:
            raise refused(decision)


async def check_operation(scope: Scope, principal: Principal | None) -> RateLimited | None:
    """A WebSocket operation: the error to send for it when the caller's budget is spent, else None."""
    limiter = _limiter(scope)
    if limiter is None:
        return None
    if principal is None:
        decision = await limiter.hit(ANONYMOUS, limiter.client_address(scope), limiter.defaults[ANONYMOUS])
    else:
        decision = await limiter.hit_user(REQUESTS, principal)
    return None if decision.allowed else refused(decision)


async def admit(scope: Scope, send: Send) -> list[tuple[bytes, bytes]] | None:
    """Count an HTTP request against its budget: the headers its response gets ([] when no budget
    applies), or None when it is refused, its 429 sent through ``send``."""
    path: str = scope["path"]
    graphql = path == "/graphql"
    limiter = _limiter(scope)
    if limiter is None or scope["method"] == "OPTIONS" or not (graphql or path.startswith("/api/v1/")):
        return []
    key = bearer_token(caller.authorization(scope))
    principal = None
    if key is not None:
        authenticator = scope["app"].state.authenticator
        principal = authenticator.known(key)
        if principal is None:
            try:
                principal = await authenticator.authenticate(key)
            except Unauthenticated:
                pass
            except Unavailable:  # the route answers 503 itself
                return []
        if principal is not None:
            caller.remember(scope, principal)
    if principal is None:
        address = limiter.client_address(scope)
        limit = limiter.defaults[ANONYMOUS]
        decision = limiter.hit_now(ANONYMOUS, address, limit) or await limiter.hit(ANONYMOUS, address, limit)
    else:
        policy = GENERATE if path == _GENERATE_PATH and scope["method"] == "POST" else REQUESTS
        decision = limiter.hit_user_now(policy, principal) or await limiter.hit_user(policy, principal)
    headers = decision.headers()
    if not decision.allowed:
        await _refuse(decision, headers, graphql, send)
        return None
    return headers


class Throttle:
    """Pure ASGI: counts every /api/v1 and /graphql HTTP request against its budget.

    Its own layer only where CORS must sit between the request context and it (a 429 then
    carries CORS headers too); otherwise the request context calls ``admit`` itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = await admit(scope, send)
        if headers is None:
            return
        if not headers:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(decision: Decision, headers: list[tuple[bytes, bytes]], graphql: bool, send: Send) -> None:
    error = refused(decision)
    payload: dict[str, Any]
    if graphql:
        payload = {"errors": [formatted(error)]}
    else:
        payload = {"success": False, "error": {"code": error.code, "message": error.message}}
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(error.retry_after).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
