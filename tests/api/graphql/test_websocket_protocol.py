"""The WebSocket protocols' edges, spoken to the app itself through ASGI: init timeout and repeats,
duplicate ids, malformed messages, legacy stop and restart, and a clean teardown (no watcher, no
task left behind) whichever way an operation runs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from sqlalchemy import text

from kensa_gql.adapters.db.accounts_store import AccountsStore
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.services.accounts import PREFIX_LENGTH
from tests.api.graphql.asgi_sockets import FOLLOW, LEGACY_WS, ME, TRANSPORT_WS, Gateway


async def test_no_connection_init_in_time_closes_with_4408(gateway: Gateway) -> None:
    client = await gateway.connect(init=False)
    client.say({"type": "ping"})  # anything but connection_init does not stop the clock
    assert (await client.receive())["type"] == "pong"
    assert await client.closed() == (4408, "Connection initialisation timeout")
    await client.disconnect()


async def test_a_second_connection_init_closes_with_4429(gateway: Gateway) -> None:
    client = await gateway.connect()
    client.say({"type": "connection_init", "payload": {"Authorization": f"Bearer {gateway.key}"}})
    assert await client.closed() == (4429, "Too many initialisation requests")
    await client.disconnect()


async def test_a_subscription_id_in_use_closes_with_4409(gateway: Gateway) -> None:
    client = await gateway.connect()
    subscribe = {"id": "1", "type": "subscribe", "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}}
    client.say(subscribe)
    assert (await client.receive())["type"] == "next"
    client.say(subscribe)
    assert await client.closed() == (4409, "Subscriber for 1 already exists")
    await client.disconnect()


@pytest.mark.parametrize(("message", "reason"), [
    ("{not json", "WebSocket message must be valid JSON"),
    ({"type": "nope"}, "Unknown message type: nope"),
    ({"payload": {}}, "Failed to parse message"),
    ({"type": "subscribe", "payload": {"query": ME}}, "Failed to parse message"),
    ({"type": "subscribe", "id": "1", "payload": "{ me { email } }"}, "Failed to parse message"),
    ([1, 2], "Failed to parse message"),
    *[({"type": "subscribe", "id": "1", "payload": payload}, "Failed to parse message") for payload in (
        {"query": 1}, {"query": ["x"]}, {"variables": {}}, {"query": ME, "variables": [1]},
        {"query": ME, "variables": "x"}, {"query": ME, "operationName": 7}, {"query": ME, "extensions": 1})],
])
async def test_a_malformed_message_closes_with_4400(gateway: Gateway, message: Any, reason: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    client = await gateway.connect()
    client.say(message)
    assert await client.closed() == (4400, reason)
    await client.disconnect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("payload", [
    {"query": ["x"]}, {"query": 1}, {"query": FOLLOW, "variables": [1]}, {"query": FOLLOW, "operationName": 7},
    {"query": FOLLOW, "extensions": "x"},
])
async def test_a_malformed_legacy_start_is_an_error_for_that_operation(
        gateway: Gateway, payload: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    client = await gateway.connect(LEGACY_WS)
    client.say({"id": "bad", "type": "start", "payload": payload})
    assert await client.receive() == {"type": "error", "id": "bad", "payload": {"message": "Failed to parse message"}}
    # The socket carries on.
    client.say({"id": "1", "type": "start", "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
    assert (await client.receive())["type"] == "data"
    await client.disconnect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_binary_message_or_a_bad_init_payload_closes_with_4400(gateway: Gateway) -> None:
    client = await gateway.connect()
    client.inbox.put_nowait({"type": "websocket.receive", "bytes": b"{}"})
    assert await client.closed() == (4400, "WebSocket message type must be text")
    await client.disconnect()
    client = await gateway.connect(init=False)
    client.say({"type": "connection_init", "payload": None})
    assert await client.closed() == (4400, "Invalid connection init payload")
    await client.disconnect()


async def test_legacy_stop_and_restart_say_complete(gateway: Gateway) -> None:
    client = await gateway.connect(LEGACY_WS)
    start = {"id": "1", "type": "start", "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}}
    for _ in range(3):  # Strawberry's loop first, then lean subscribers
        client.say(start)
        assert (await client.receive())["type"] == "data"
        client.say({"id": "1", "type": "stop"})
        assert await client.receive() == {"type": "complete", "id": "1"}
    client.say(start)
    assert (await client.receive())["type"] == "data"
    client.say(start)  # the same id again: the first ends, then the second starts
    assert await client.receive() == {"type": "complete", "id": "1"}
    assert (await client.receive())["type"] == "data"
    assert gateway.app.state.events.watcher_count == 1
    client.say("garbage")  # the legacy protocol ignores what it cannot parse
    client.say({"type": "connection_terminate"})
    assert await client.closed() == (1000, "")
    await client.disconnect()
    assert gateway.app.state.events.watcher_count == 0


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_disconnect_leaves_no_watcher_and_no_task_behind(gateway: Gateway, protocol: str) -> None:
    # given a socket with a subscription through Strawberry's loop (a document not seen yet), lean
    # subscribers, and a query still running
    before = asyncio.all_tasks()
    client = await gateway.connect(protocol)
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    for op_id in ("a", "b", "c"):
        client.say({"id": op_id, "type": kind, "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
        assert (await client.receive())["id"] == op_id
    assert gateway.app.state.events.watcher_count == 3
    # when the client goes away without a word
    await client.disconnect()
    # then nothing of it is left: no watcher, no task
    assert gateway.app.state.events.watcher_count == 0
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before == set()


async def test_legacy_start_before_init_closes_with_4401_and_a_bad_payload_is_a_connection_error(
        gateway: Gateway) -> None:
    client = await gateway.connect(LEGACY_WS, init=False)
    client.say({"id": "1", "type": "start", "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
    assert await client.closed() == (4401, "Unauthorized")
    await client.disconnect()
    client = await gateway.connect(LEGACY_WS, init=False)
    client.say({"type": "connection_init", "payload": "not an object"})
    assert await client.receive() == {"type": "connection_error"}
    assert await client.closed() == (1000, "")
    await client.disconnect()


async def test_a_lean_subscriber_gets_what_a_resubscription_re_reads(gateway: Gateway) -> None:
    # given a lean subscriber (the document is known after a first subscription)
    client = await gateway.connect()
    for op_id in ("warm", "lean"):
        client.say({"id": op_id, "type": "subscribe",
                    "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
        assert (await client.receive())["id"] == op_id
    # when the video changes while the event channel is down (nothing is published) ...
    state = gateway.app.state
    async with state.deps.db.writing() as uow:
        store = VideosStore(uow)
        video = await store.get_by_uuid(gateway.uuid)
        assert video is not None
        await store.update_status(video, status=VideoStatus.GENERATING.value, progress=55)
        await uow.commit()
    # ... and the channel resubscribes (what it calls then), so watched videos are re-read
    state.events._subscribed()
    got = {m["id"]: m["payload"]["data"]["videoStatus"]["progress"] for m in
           [await client.receive(), await client.receive()]}
    assert got == {"warm": 55, "lean": 55}
    await client.disconnect()


async def test_legacy_graphql_ws_without_connection_init_in_time_closes_with_4408(gateway: Gateway) -> None:
    # Strawberry's legacy handler waits for ever; ours closes as graphql-transport-ws does.
    client = await gateway.connect(LEGACY_WS, init=False)
    assert await client.closed() == (4408, "Connection initialisation timeout")
    await client.disconnect()


async def test_legacy_graphql_ws_initialised_in_time_stays_open(gateway: Gateway) -> None:
    client = await gateway.connect(LEGACY_WS)
    await asyncio.sleep(0.5)  # past the 0.3 s init timeout
    assert not any(m["type"] == "websocket.close" for m in client.out)
    await client.disconnect()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_nothing_runs_on_a_socket_once_its_key_is_revoked(gateway: Gateway, protocol: str) -> None:
    """A revoked key's socket is ended, its subscriptions first; what the client still sends never runs."""
    app = gateway.app
    client = await gateway.connect(protocol)
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    client.say({"id": "1", "type": kind, "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
    assert (await client.receive())["id"] == "1"
    async with app.state.deps.db.writing() as uow:
        await AccountsStore(uow).revoke_key(gateway.key[:PREFIX_LENGTH], 1)
        await uow.commit()
    assert await app.state.sessions.check() == 1
    if protocol == LEGACY_WS:  # its subscription completes, then the connection is refused
        while (message := await client.receive())["type"] != "connection_error":
            assert message["id"] == "1", message
    assert (await client.closed())[0] == (4403 if protocol == TRANSPORT_WS else 1011)
    for _ in range(200):  # cancelled with the socket; its task unwinds on the next turns
        if not app.state.deps.watchers:
            break
        await asyncio.sleep(0.01)
    assert not app.state.deps.watchers, "the subscription ended with the socket"
    # A client that does not honour the close: its generate runs nowhere and freezes nothing.
    before = await balance(app, gateway.key)
    generate = "mutation { generateVideo(input: {prompt: \"x\", model: \"sora-2\", duration: 4, " \
               "aspectRatio: \"16:9\"}) { uuid } }"
    client.say({"id": "2", "type": kind, "payload": {"query": generate}})
    client.say({"id": "3", "type": kind, "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
    await asyncio.sleep(0.3)
    sent = [json.loads(m["text"]) for m in client.out if m["type"] == "websocket.send"]
    assert not [m for m in sent if m.get("id") in ("2", "3") and m["type"] in ("next", "data")], sent
    assert await balance(app, gateway.key) == before
    await client.disconnect()
    assert len(app.state.sessions) == 0


async def balance(app: Any, key: str) -> tuple[int, int]:
    async with app.state.deps.db.reading() as uow:
        row = (await uow.conn.execute(text(
            "SELECT (SELECT COUNT(*) FROM credit_holds h WHERE h.user_id = k.user_id),"
            " (SELECT COUNT(*) FROM videos v WHERE v.user_id = k.user_id) FROM api_keys k WHERE k.prefix = :p"),
            {"p": key[:PREFIX_LENGTH]})).one()
    return int(row[0]), int(row[1])
