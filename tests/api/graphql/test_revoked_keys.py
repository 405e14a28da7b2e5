"""A revoked key, or a deleted user, loses its open WebSockets too: on both protocols, on every
replica, within about the auth cache's lifetime, and nothing runs on those sockets afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kensa_gql.adapters.db.database import Database
from kensa_gql.services import accounts
from tests.api.graphql.wire import VIDEO_STATUS, Session, eventually, generate, open_session, post
from tests.conftest import LiveServer, Serve

TRANSPORT_WS, LEGACY_WS = "graphql-transport-ws", "graphql-ws"
# The check runs every max(KENSA_AUTH_CACHE_SECONDS, 1 s); the tests' cache is 0 s.
NOTICED_WITHIN = 5.0


async def signed_in(server: LiveServer, protocol: str, key: str, uuid: str) -> Session:
    """A socket signed in with ``key``, following ``uuid`` (its first status already received)."""
    session = await open_session(server.url, protocol=protocol, key=key)
    assert (await session.receive())["type"] == "connection_ack"
    if protocol == TRANSPORT_WS:
        await session.subscribe("follow", VIDEO_STATUS, {"uuid": uuid})
    else:
        await session.start("follow", VIDEO_STATUS, {"uuid": uuid})
    first = await session.receive()
    assert first["type"] in ("next", "data") and first["id"] == "follow", first
    return session


async def ended_as_refused(session: Session, protocol: str) -> None:
    """The socket ends as a refused connection_init ends one, and soon."""
    async with asyncio.timeout(NOTICED_WITHIN):
        if protocol == LEGACY_WS:
            while (message := await session.receive())["type"] != "connection_error":
                assert message.get("id") == "follow", message  # only the subscription's own updates
            assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
        code, reason = await session.closed_with()
    assert (code, reason) == ((4403, "Forbidden") if protocol == TRANSPORT_WS else (1011, ""))


async def still_works(session: Session, protocol: str, uuid: str) -> None:
    if protocol == TRANSPORT_WS:
        await session.subscribe("me", "query { me { email } }")
        messages = await session.until_done("me")
        assert messages[0]["type"] == "next" and messages[0]["payload"]["data"]["me"]["email"], messages
    else:  # legacy graphql-ws carries subscriptions only (Strawberry's rule): a second one starts
        await session.start("again", VIDEO_STATUS, {"uuid": uuid})
        while (message := await session.receive()).get("id") != "again":
            pass
        assert message["type"] == "data" and message["payload"]["data"]["videoStatus"]["uuid"] == uuid


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_revoking_a_key_ends_its_sockets_on_every_replica(
        serve: Serve, make_user: Any, db: Database, protocol: str) -> None:
    # Two replicas on one database: a revocation reaches both, whichever process it was made on.
    first, second = serve(run_worker=False), serve(run_worker=False)
    user = await make_user(credits=100)
    other_key = (await accounts.create_key(user.email, db=db)).key
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        uuid = await generate(client, user.key)
        revoked = [await signed_in(server, protocol, user.key, uuid) for server in (first, second)]
        kept = await signed_in(first, protocol, other_key, uuid)

        await accounts.revoke_key(user.key[:accounts.PREFIX_LENGTH], db=db)
        for session in revoked:
            await ended_as_refused(session, protocol)

        # The other key of the same user keeps its socket, and HTTP refuses the revoked one.
        await still_works(kept, protocol, uuid)
        await kept.close()
        body = await post(client, "query { me { email } }", key=user.key)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # Every socket has left the sessions: the ended ones at once, the closed one as it went.
        await eventually(lambda: len(first.app.state.sessions) == len(second.app.state.sessions) == 0,
                         "the sessions to empty")


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_deleted_user_loses_its_sockets(serve: Serve, make_user: Any, db: Database, protocol: str) -> None:
    server = serve(run_worker=False)
    owner = await make_user(credits=100)
    doomed = await make_user(credits=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, owner.key)
    # The doomed user follows nothing of its own: a socket signed in, asking who it is.
    session = await open_session(server.url, protocol=protocol, key=doomed.key)
    assert (await session.receive())["type"] == "connection_ack"
    if protocol == LEGACY_WS:
        await session.start("follow", VIDEO_STATUS, {"uuid": uuid})  # another's video: nothing to see
    async with db.writing() as uow:  # a user removed by an operator, with what refers to it
        for table in ("api_keys", "credit_accounts"):
            await uow.conn.execute(text(f"DELETE FROM {table} WHERE user_id = :u"), {"u": doomed.user_id})
        await uow.conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": doomed.user_id})
        await uow.commit()
    async with asyncio.timeout(NOTICED_WITHIN):
        if protocol == LEGACY_WS:
            while (await session.receive())["type"] != "connection_error":
                pass
        code, _ = await session.closed_with()
    assert code == (4403 if protocol == TRANSPORT_WS else 1011)
