"""Authentication without a database hit per request, and revocation that still bites within the TTL."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import event

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.reads import Reads
from kensa_gql.domain.errors import Unauthenticated
from kensa_gql.services import accounts
from kensa_gql.services.accounts import Authenticator

TTL = 0.3


class Lookups:
    """Counts key lookups that reach the database through the connection pool."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._pool = db.engine.sync_engine.pool
        event.listen(self._pool, "checkout", self._seen)

    def _seen(self, *_args: object) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self._pool, "checkout", self._seen)


def pooled_reads(db: Database) -> None:
    """Send every read through the pool, so lookups can be counted at it."""
    db.__dict__["reads"] = Reads(db.engine, db.reading, fast=False)


async def wait_past(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.01)


async def test_a_good_key_is_looked_up_once_per_ttl(db: Database) -> None:
    _, issued = await accounts.create_user("cache@example.test", db=db)
    pooled_reads(db)
    lookups = Lookups(db)
    try:
        auth = Authenticator(db, ttl=30)
        for _ in range(50):
            assert (await auth.authenticate(issued.key)).email == "cache@example.test"
        assert lookups.count == 1
    finally:
        lookups.close()


async def test_a_revoked_key_stops_working_once_its_entry_expires(db: Database) -> None:
    _, issued = await accounts.create_user("revoke@example.test", db=db)
    auth = Authenticator(db, ttl=TTL)
    await auth.authenticate(issued.key)
    trusted_until = time.monotonic() + TTL
    await accounts.revoke_key(issued.prefix, db=db)
    await wait_past(trusted_until)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(issued.key)


async def test_requests_finding_an_expired_entry_share_one_lookup(db: Database) -> None:
    _, issued = await accounts.create_user("herd@example.test", db=db)
    pooled_reads(db)
    auth = Authenticator(db, ttl=TTL)
    await auth.authenticate(issued.key)
    await wait_past(time.monotonic() + TTL)
    lookups = Lookups(db)
    try:
        principals = await asyncio.gather(*(auth.authenticate(issued.key) for _ in range(40)))
        assert {p.email for p in principals} == {"herd@example.test"}
        assert lookups.count == 1
    finally:
        lookups.close()


async def test_a_shared_refresh_of_a_revoked_key_refuses_every_waiter(db: Database) -> None:
    _, issued = await accounts.create_user("herd-revoked@example.test", db=db)
    pooled_reads(db)
    auth = Authenticator(db, ttl=TTL)
    await auth.authenticate(issued.key)
    await accounts.revoke_key(issued.prefix, db=db)
    await wait_past(time.monotonic() + TTL)
    results = await asyncio.gather(*(auth.authenticate(issued.key) for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, Unauthenticated) for r in results)


async def test_an_unknown_key_is_never_cached(db: Database) -> None:
    auth = Authenticator(db, ttl=30)
    _, issued = await accounts.create_user("early@example.test", db=db)
    await accounts.revoke_key(issued.prefix, db=db)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(issued.key)
    # a key issued after a failed attempt works at once
    fresh = await accounts.create_key("early@example.test", db=db)
    assert (await auth.authenticate(fresh.key)).email == "early@example.test"


async def test_malformed_keys_never_reach_the_database(db: Database) -> None:
    pooled_reads(db)
    lookups = Lookups(db)
    try:
        auth = Authenticator(db, ttl=30)
        for key in (None, "", "Bearer x", "kg_short", "kg_" + "!" * 45):
            with pytest.raises(Unauthenticated):
                await auth.authenticate(key)
        assert lookups.count == 0
    finally:
        lookups.close()
