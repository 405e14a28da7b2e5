"""Users, API keys, authentication and credit balances."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from kensa_gql.adapters.db.accounts_store import AccountsStore, DuplicateEmail
from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.ledger_store import LedgerStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import BadUserInput, Conflict, NotFound, Unauthenticated
from kensa_gql.domain.ledger import Balance, Entry, PackageType
from kensa_gql.domain.paging import Page
from kensa_gql.services import ledger

KEY_PREFIX = "kg_"
# "kg_" + 9 characters identify the key (shown, revocable); the rest is the secret.
PREFIX_LENGTH = 12
_KEY_SHAPE = re.compile(r"^kg_[A-Za-z0-9_-]{40,64}$")
_EMAIL_SHAPE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from an API key."""

    user_id: int
    email: str
    # The user's own rate limits per minute (`users set-limits`); None: the gateway's defaults.
    generate_per_minute: int | None = None
    requests_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str
    prefix: str


def _hash(key: str) -> str:
    # Keys carry 240 bits of randomness, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(30).replace("-", "A").replace("_", "B")
    return IssuedKey(key=key, prefix=key[:PREFIX_LENGTH])


async def create_user(email: str, *, credits: int = 0, db: Database) -> tuple[Principal, IssuedKey]:
    """Create a user with one API key and, optionally, a gift of credits."""
    email = email.strip().lower()
    if not _EMAIL_SHAPE.match(email):
        raise BadUserInput(f"not an email address: {email!r}", field="email")
    if credits < 0:
        raise BadUserInput("credits must not be negative", field="credits")
    issued = _new_key()
    now = now_ms()
    async with db.writing() as uow:
        store = AccountsStore(uow)
        try:
            user = await store.add_user(email, now)
        except DuplicateEmail:
            raise Conflict(f"a user with email {email} already exists") from None
        await LedgerStore(uow).open_account(user.id)
        await store.add_key(user.id, issued.prefix, _hash(issued.key), now)
        if credits:
            await ledger.grant(uow, user_id=user.id, amount=credits, kind=PackageType.GIFT,
                               expires_at_ms=None, now_ms=now)
        await uow.commit()
    return Principal(user.id, user.email), issued


async def create_key(email: str, *, db: Database) -> IssuedKey:
    """Issue another API key for an existing user."""
    issued = _new_key()
    async with db.writing() as uow:
        store = AccountsStore(uow)
        user = await store.user_by_email(email.strip().lower())
        if user is None:
            raise NotFound("user")
        await store.add_key(user.id, issued.prefix, _hash(issued.key), now_ms())
        await uow.commit()
    return issued


async def replace_keys(email: str, *, db: Database) -> tuple[IssuedKey, list[str]]:
    """Issue a new key for a user and revoke all of their others (the prefixes revoked)."""
    issued = _new_key()
    now = now_ms()
    async with db.writing() as uow:
        store = AccountsStore(uow)
        user = await store.user_by_email(email.strip().lower())
        if user is None:
            raise NotFound("user")
        revoked = await store.revoke_keys_of(user.id, now)
        await store.add_key(user.id, issued.prefix, _hash(issued.key), now)
        await uow.commit()
    return issued, revoked


async def revoke_key(key_or_prefix: str, *, db: Database) -> str:
    """Revoke a key, given in full or by its prefix; it stops working within the auth cache's
    lifetime. Returns the prefix revoked."""
    value = key_or_prefix.strip()
    prefix = value[:PREFIX_LENGTH] if _KEY_SHAPE.match(value) else value
    async with db.writing() as uow:
        store = AccountsStore(uow)
        if prefix != value:  # a whole key: it must be that key, not just share its prefix
            record = await store.key_by_prefix(prefix)
            if record is None or not hmac.compare_digest(record.key_hash, _hash(value)):
                raise NotFound("active key")
        if not await store.revoke_key(prefix, now_ms()):
            raise NotFound("active key")
        await uow.commit()
    return prefix


async def active_keys(keys: Collection[str], *, db: Database) -> set[str]:
    """Those of ``keys`` that still sign in: not revoked, and their user still exists. One read."""
    wanted = {_hash(key): key for key in keys}
    async with db.reading() as uow:
        hashes = await AccountsStore(uow).active_key_hashes(sorted({key[:PREFIX_LENGTH] for key in keys}))
    return {wanted[digest] for digest in hashes if digest in wanted}


LIMIT_NAMES = ("generate_per_minute", "requests_per_minute")
MAX_LIMIT = 1_000_000


async def set_limits(email: str, changes: Mapping[str, int | None], *, db: Database) -> dict[str, int | None]:
    """Change a user's own rate limits per minute (None: back to the gateway's default); returns
    both as they are now. Live within the auth cache's lifetime."""
    for name, value in changes.items():
        if name not in LIMIT_NAMES:
            raise BadUserInput(f"no such limit: {name}", field=name)
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise BadUserInput(f"{name} must be between 0 and {MAX_LIMIT}", field=name)
    async with db.writing() as uow:
        store = AccountsStore(uow)
        user = await store.user_by_email(email.strip().lower())
        if user is None:
            raise NotFound("user")
        limits = await store.set_limits(user.id, changes)
        await uow.commit()
    return limits


async def grant_credits(email: str, amount: int, *, kind: PackageType = PackageType.GIFT,
                        expires_in_days: float | None = None, db: Database) -> Balance:
    """Give a user a package of credits; returns the new balance."""
    if expires_in_days is not None and expires_in_days <= 0:
        raise BadUserInput("expires-in-days must be positive", field="expiresInDays")
    now = now_ms()
    expires = None if expires_in_days is None else now + int(expires_in_days * DAY_MS)
    async with db.writing() as uow:
        user = await AccountsStore(uow).user_by_email(email.strip().lower())
        if user is None:
            raise NotFound("user")
        await ledger.grant(uow, user_id=user.id, amount=amount, kind=kind, expires_at_ms=expires, now_ms=now)
        balance = await LedgerStore(uow).balance(user.id, now)
        await uow.commit()
    return balance


async def count_users(*, db: Database) -> int:
    async with db.reading() as uow:
        return await AccountsStore(uow).count_users()


async def frozen_credits(*, db: Database) -> int:
    """Credits frozen by every video in flight, over all users (a gauge for /metrics)."""
    async with db.reading() as uow:
        return await LedgerStore(uow).frozen_total()


async def get_balance(principal: Principal, *, db: Database) -> Balance:
    """The caller's balance now (expired packages already count as expired)."""
    async with db.reading() as uow:
        return await LedgerStore(uow).balance(principal.user_id, now_ms())


async def credit_history(principal: Principal, page: Page, *, db: Database) -> tuple[list[Entry], int]:
    """The caller's ledger entries, newest first."""
    async with db.reading() as uow:
        return await LedgerStore(uow).history(principal.user_id, offset=page.offset, limit=page.page_size)


class Authenticator:
    """Resolves API keys to principals, remembering good keys briefly.

    The cache keeps the database out of the hot path; a revoked key stops working once its
    entry ages out (``ttl`` seconds, a setting). Unknown keys are never cached, so a key
    created a moment ago works at once. When a good key's entry ages out under load, the
    requests that find it expired share one lookup instead of all asking the database at once.
    """

    def __init__(self, db: Database, *, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._refreshing: dict[str, asyncio.Future[Principal]] = {}

    def known(self, key: str) -> Principal | None:
        """The key's principal if it is remembered and fresh: ``authenticate``'s hot path, without an await."""
        if not _KEY_SHAPE.match(key):
            return None
        hit = self._cache.get(_hash(key))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    async def authenticate(self, key: str | None) -> Principal:
        if not key or not _KEY_SHAPE.match(key):
            raise Unauthenticated()
        digest = _hash(key)
        hit = self._cache.get(digest)
        if hit is None:
            return await self._verify(key, digest)
        if hit[1] > time.monotonic():
            return hit[0]
        refresh = self._refreshing.get(digest)
        if refresh is None:
            refresh = asyncio.ensure_future(self._verify(key, digest))
            self._refreshing[digest] = refresh
            refresh.add_done_callback(lambda _done: self._refreshing.pop(digest, None))
        # Shielded: one caller giving up must not cancel the lookup the others wait for.
        return await asyncio.shield(refresh)

    async def _verify(self, key: str, digest: str) -> Principal:
        record = await self._db.reads.api_key(key[:PREFIX_LENGTH])
        if record is None or record.revoked or not hmac.compare_digest(record.key_hash, digest):
            self._cache.pop(digest, None)
            raise Unauthenticated()
        principal = Principal(record.user_id, record.email, record.generate_per_minute, record.requests_per_minute)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, time.monotonic() + self._ttl)
        return principal


def bearer_token(header: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` header (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
