"""videoStatus and GraphQL over WebSocket, with raw sockets speaking both subprotocols."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.graphql.wire import (
    GENERATE,
    REQUEST,
    VIDEO_STATUS,
    codes,
    eventually,
    generate,
    open_session,
    post,
)
from tests.conftest import LiveServer, Serve
from tests.support import wait_for_status

ME = "query { me { email credits { available frozen used total } } }"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
TRANSPORT_WS, LEGACY_WS = "graphql-transport-ws", "graphql-ws"


def statuses(messages: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(m["payload"]["data"]["videoStatus"]["status"], m["payload"]["data"]["videoStatus"]["progress"])
            for m in messages if m["type"] in ("next", "data")]


def assert_followed_to_completion(seen: list[tuple[str, int]], *, first: set[str]) -> None:
    order = {"PENDING": 0, "GENERATING": 1, "UPLOADING": 2, "COMPLETED": 3}
    assert seen[0][0] in first, seen
    assert seen[-1] == ("COMPLETED", 100), seen
    ranks = [(order[s], p) for s, p in seen]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), f"not strictly newer each time: {seen}"
    progress = [p for s, p in seen if s == "GENERATING"]
    assert len(progress) >= 3, f"fewer than three progress events: {seen}"


def watchers(server: LiveServer) -> int:
    count: int = server.app.state.events.watcher_count
    return count


async def ack(session: Any) -> None:
    assert (await session.receive())["type"] == "connection_ack"


async def test_follow_a_video_from_generate_to_completed(serve: Serve, make_user: Any) -> None:
    server = serve(local_generation_seconds=2.0)
    user = await make_user(credits=100)
    session = await open_session(server.url, key=user.key)
    await ack(session)
    # Generate over the socket too: graphql-transport-ws carries mutations as well.
    await session.subscribe("gen", GENERATE, {"input": REQUEST})
    created = await session.until_done("gen")
    assert [m["type"] for m in created] == ["next", "complete"]
    video = created[0]["payload"]["data"]["generateVideo"]
    price = video["creditsUsed"]

    await session.subscribe("follow", VIDEO_STATUS, {"uuid": video["uuid"]})
    messages = await session.until_done("follow")
    assert messages[-1]["type"] == "complete"
    assert_followed_to_completion(statuses(messages), first={"PENDING", "GENERATING"})
    last = messages[-2]["payload"]["data"]["videoStatus"]
    assert last["videoUrl"] and last["id"] == video["uuid"] and last["creditsUsed"] == price

    await session.subscribe("me", ME)
    me = (await session.until_done("me"))[0]["payload"]["data"]["me"]
    assert me["credits"] == {"available": 100 - price, "frozen": 0, "used": price, "total": 100}
    await session.close()
    await eventually(lambda: watchers(server) == 0, "the watcher to be freed")


async def test_a_subscriber_sees_pending_first_and_events_from_a_worker_in_another_process(
        serve: Serve, make_user: Any) -> None:
    # The API and the worker are separate servers sharing the database and Redis, as in production:
    # the subscription starts while nothing drives the video, so its first snapshot is PENDING.
    broadcast = "redis://127.0.0.1:6379/0"
    api = serve(run_worker=False, broadcast_url=broadcast)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    session = await open_session(api.url, key=user.key)
    await ack(session)
    await session.subscribe("1", VIDEO_STATUS, {"uuid": uuid})
    first = await session.receive()
    assert first["payload"]["data"]["videoStatus"]["status"] == "PENDING"

    serve(run_worker=True, broadcast_url=broadcast, local_generation_seconds=2.0)
    rest = [first, *await session.until_done("1")]
    assert_followed_to_completion(statuses(rest), first={"PENDING"})
    await session.close()


async def test_legacy_graphql_ws_protocol_follows_a_video(serve: Serve, make_user: Any) -> None:
    server = serve(local_generation_seconds=2.0)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    session = await open_session(server.url, protocol=LEGACY_WS, key=user.key)
    await ack(session)
    await session.start("1", VIDEO_STATUS, {"uuid": uuid})
    messages = await session.until_done("1")
    assert messages[-1]["type"] == "complete"
    assert_followed_to_completion(statuses(messages), first={"PENDING", "GENERATING"})
    await session.close()


async def test_a_finished_video_sends_its_snapshot_and_completes(
        live_server: LiveServer, client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=100)
    uuid = await generate(client, user.key)
    await wait_for_status(client, user, uuid, {"COMPLETED"})
    session = await open_session(live_server.url, key=user.key)
    await ack(session)
    await session.subscribe("1", VIDEO_STATUS, {"uuid": uuid})
    messages = await session.until_done("1")
    assert [m["type"] for m in messages] == ["next", "complete"]
    assert statuses(messages) == [("COMPLETED", 100)]
    await session.close()


async def test_two_subscribers_to_one_video_both_get_every_event(serve: Serve, make_user: Any) -> None:
    # Two browser tabs on one video. broadcaster 0.3.1 alone would leave one of them without events.
    broadcast = "redis://127.0.0.1:6379/0"
    api = serve(run_worker=False, broadcast_url=broadcast)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    tabs = [await open_session(api.url, key=user.key) for _ in range(2)]
    for tab in tabs:
        await ack(tab)
        await tab.subscribe("1", VIDEO_STATUS, {"uuid": uuid})
    firsts = [await tab.receive() for tab in tabs]
    assert [statuses([m]) for m in firsts] == [[("PENDING", 0)]] * 2
    assert watchers(api) == 2

    serve(run_worker=True, broadcast_url=broadcast, local_generation_seconds=2.0)
    seen = [statuses([first, *await tab.until_done("1")]) for first, tab in zip(firsts, tabs, strict=True)]
    for one in seen:
        assert_followed_to_completion(one, first={"PENDING"})
    generating = [[p for s, p in one if s == "GENERATING"] for one in seen]
    assert generating[0] == generating[1]
    for tab in tabs:
        await tab.close()
    await eventually(lambda: watchers(api) == 0, "both watchers to be freed")


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
async def test_the_key_in_connection_init_is_found_in_any_case(live_server: LiveServer, make_user: Any,
                                                               name: str) -> None:
    user = await make_user()
    session = await open_session(live_server.url, init={name: f"Bearer {user.key}"})
    await ack(session)
    await session.subscribe("1", ME)
    assert (await session.until_done("1"))[0]["payload"]["data"]["me"]["email"] == user.email
    await session.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_key_in_the_upgrade_header_is_enough(live_server: LiveServer, client: httpx.AsyncClient,
                                                       make_user: Any, protocol: str) -> None:
    user = await make_user(credits=100)
    uuid = await generate(client, user.key)
    session = await open_session(live_server.url, protocol=protocol, headers=user.headers)
    await session.send({"type": "connection_init"})  # no payload at all, as graphql-ws sends it
    await ack(session)
    begin = session.subscribe if protocol == TRANSPORT_WS else session.start
    await begin("1", VIDEO_STATUS, {"uuid": uuid})
    first = await session.receive()
    assert first["payload"]["data"]["videoStatus"]["uuid"] == uuid
    await session.close()


@pytest.mark.parametrize("init", [
    {"Authorization": "Bearer kg_" + "A" * 43},
    {"Authorization": "kg_not_even_bearer"},
    {"Authorization": 12345},
    {},
    {"authToken": "whatever"},
])
async def test_a_bad_or_missing_key_closes_with_4403(live_server: LiveServer, init: dict[str, Any]) -> None:
    session = await open_session(live_server.url, init=init)
    assert await session.closed_with() == (4403, "Forbidden")


async def test_a_bad_key_in_the_payload_is_not_rescued_by_a_good_header(live_server: LiveServer,
                                                                         make_user: Any) -> None:
    user = await make_user()
    session = await open_session(live_server.url, headers=user.headers, init={"Authorization": "Bearer nope"})
    assert (await session.closed_with())[0] == 4403


async def test_legacy_protocol_answers_a_bad_key_with_connection_error(live_server: LiveServer) -> None:
    session = await open_session(live_server.url, protocol=LEGACY_WS, init={"Authorization": "Bearer nope"})
    message = await session.receive()
    assert message["type"] == "connection_error"
    assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
    code, _ = await session.closed_with()
    assert code is not None and code != 1000


async def test_a_foreign_or_unknown_uuid_is_not_found_and_the_socket_carries_on(
        live_server: LiveServer, client: httpx.AsyncClient, make_user: Any) -> None:
    owner, other = await make_user(credits=100), await make_user(credits=100)
    theirs = await generate(client, owner.key)
    session = await open_session(live_server.url, key=other.key)
    await ack(session)
    for op_id, uuid in (("foreign", theirs), ("unknown", UNKNOWN), ("garbage", "not-a-uuid")):
        await session.subscribe(op_id, VIDEO_STATUS, {"uuid": uuid})
        messages = await session.until_done(op_id)
        assert [m["type"] for m in messages] == ["error"]
        assert [e["extensions"]["code"] for e in messages[0]["payload"]] == ["NOT_FOUND"]
        assert theirs not in str(messages)
    await session.subscribe("me", ME)
    assert (await session.until_done("me"))[0]["payload"]["data"]["me"]["email"] == other.email
    mine = await generate(client, other.key)
    await session.subscribe("mine", VIDEO_STATUS, {"uuid": mine})
    assert (await session.receive())["payload"]["data"]["videoStatus"]["uuid"] == mine
    await session.close()
    await eventually(lambda: watchers(live_server) == 0, "the watcher to be freed")


async def test_complete_and_stop_free_the_watcher(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False)  # nothing drives the video: the subscription stays open
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    modern = await open_session(server.url, key=user.key)
    legacy = await open_session(server.url, protocol=LEGACY_WS, key=user.key)
    await ack(modern)
    await ack(legacy)
    await modern.subscribe("1", VIDEO_STATUS, {"uuid": uuid})
    await legacy.start("1", VIDEO_STATUS, {"uuid": uuid})
    await modern.receive()
    await legacy.receive()
    assert watchers(server) == 2

    await modern.send({"id": "1", "type": "complete"})
    await eventually(lambda: watchers(server) == 1, "complete to free its watcher")
    await legacy.send({"id": "1", "type": "stop"})
    await eventually(lambda: watchers(server) == 0, "stop to free its watcher")
    # The sockets are still open and usable.
    await modern.subscribe("2", ME)
    assert (await modern.until_done("2"))[0]["type"] == "next"
    await modern.close()
    await legacy.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_dropping_the_tcp_connection_frees_every_watcher(serve: Serve, make_user: Any,
                                                               protocol: str) -> None:
    server = serve(run_worker=False)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuids = [await generate(client, user.key) for _ in range(3)]
    session = await open_session(server.url, protocol=protocol, key=user.key)
    await ack(session)
    begin = session.subscribe if protocol == TRANSPORT_WS else session.start
    for n, uuid in enumerate(uuids):
        await begin(str(n), VIDEO_STATUS, {"uuid": uuid})
        await session.receive()
    assert watchers(server) == 3
    session.ws.transport.abort()  # no close frame, as when a laptop lid shuts
    await eventually(lambda: watchers(server) == 0, "the server to notice the dropped connection")


async def test_max_subscriptions_per_connection(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False, max_subscriptions_per_connection=2)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    session = await open_session(server.url, key=user.key)
    await ack(session)
    for op_id in ("1", "2"):
        await session.subscribe(op_id, VIDEO_STATUS, {"uuid": uuid})
        await session.receive()
    await session.subscribe("3", VIDEO_STATUS, {"uuid": uuid})
    refused = await session.until_done("3")
    assert refused[0]["type"] == "error" and "limit" in refused[0]["payload"][0]["message"].lower()
    assert watchers(server) == 2
    await session.send({"id": "1", "type": "complete"})
    await eventually(lambda: watchers(server) == 1, "a slot to free up")
    await session.subscribe("4", VIDEO_STATUS, {"uuid": uuid})
    assert (await session.receive())["id"] == "4"
    await session.close()


async def test_queries_ping_and_errors_over_graphql_transport_ws(live_server: LiveServer,
                                                                make_user: Any) -> None:
    user = await make_user(credits=0)
    session = await open_session(live_server.url, key=user.key)
    await ack(session)
    await session.send({"type": "ping"})
    assert (await session.receive())["type"] == "pong"
    await session.subscribe("gen", GENERATE, {"input": REQUEST})
    messages = await session.until_done("gen")
    assert [m["type"] for m in messages] == ["next", "complete"]
    assert codes(messages[0]["payload"]) == ["INSUFFICIENT_CREDITS"]
    # A syntax error ends that operation only; the socket stays open for the others.
    await session.subscribe("bad", "{ me { email }")
    bad = await session.until_done("bad")
    assert bad[0]["type"] == "error" and bad[0]["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    await session.subscribe("ok", ME)
    assert (await session.until_done("ok"))[0]["payload"]["data"]["me"]["email"] == user.email
    await session.close()


async def test_legacy_protocol_refuses_queries_politely(live_server: LiveServer, make_user: Any) -> None:
    user = await make_user()
    session = await open_session(live_server.url, protocol=LEGACY_WS, key=user.key)
    await ack(session)
    await session.send({"id": "1", "type": "start", "payload": {"query": ME}})
    message = await session.receive()
    assert message["type"] == "error" and message["id"] == "1"
    await session.close()


async def test_subscribe_before_connection_init_is_refused(live_server: LiveServer) -> None:
    session = await open_session(live_server.url)
    await session.subscribe("1", ME)
    assert (await session.closed_with())[0] == 4401


async def test_unknown_subprotocol_is_refused(live_server: LiveServer) -> None:
    session = await open_session(live_server.url, protocol="graphql-sse")
    assert (await session.closed_with())[0] == 4406


async def test_deleting_a_watched_video_ends_its_subscription_with_not_found(serve: Serve,
                                                                             make_user: Any) -> None:
    # Slow enough that no progress event arrives within the receive timeout: the delete itself
    # must end the subscription.
    server = serve(local_generation_seconds=200.0)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, user.key)
        session = await open_session(server.url, key=user.key)
        await ack(session)
        await session.subscribe("1", VIDEO_STATUS, {"uuid": uuid})
        await session.receive()
        body = await post(client, "mutation($u: ID!) { deleteVideo(uuid: $u) { deleted } }", {"u": uuid},
                          key=user.key)
        assert body["data"]["deleteVideo"]["deleted"] is True
        # Deleting publishes the change: the subscription ends with NOT_FOUND, like a new one.
        messages = await session.until_done("1")
        assert codes(messages[-2]["payload"]) == ["NOT_FOUND"] and messages[-1]["type"] == "complete"
        await session.close()
