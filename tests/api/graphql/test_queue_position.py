"""Queue positions: where a PENDING video waits, in claim order, read for a page in one statement."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from kensa_gql.adapters.db.reads import _POSTGRES
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.services import videos
from tests.api.graphql.asgi_sockets import LEGACY_WS, REQUEST, TRANSPORT_WS, Gateway

LIST = "query { videos(pageSize: 20) { videos { uuid status queuePosition } } }"
ONE = "query One($uuid: ID!) { video(uuid: $uuid) { uuid queuePosition } }"
FOLLOW = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status queuePosition } }"
FOLLOW_PLAIN = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"
# The same page, asking for queuePosition in other ways, or not at all.
SPREAD = """fragment Place on Video { status queuePosition }
query Spread { videos(pageSize: 20) { videos { uuid ...Place } } }"""
INLINE = "query Inline { videos(pageSize: 20) { ... on VideoPage { videos { uuid ... on Video { queuePosition } } } } }"
ALIASED = "query Aliased { page: videos(pageSize: 20) { all: videos { uuid place: queuePosition } } }"
UNASKED = "query Unasked { videos(pageSize: 20) { videos { uuid status } } }"
SKIPPED = "query Skipped($on: Boolean!) { videos(pageSize: 20) { videos { uuid queuePosition @include(if: $on) } } }"
GENERATE = "mutation Generate($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid queuePosition } }"
RETRY = """mutation Retry($uuid: ID!) { retryVideo(uuid: $uuid) { uuid ...Place } }
fragment Place on Video { queuePosition }"""
CANCEL = "mutation Cancel($uuid: ID!) { cancelVideo(uuid: $uuid) { video { uuid status queuePosition } } }"


@pytest.fixture
def statements(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent, through the engine or on the fast read path's own connections."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    reads = gateway.app.state.deps.db.reads
    connection = reads._connection

    def traced() -> Any:
        conn = connection()
        conn.set_trace_callback(seen.append)
        # Every request's statements are counted: SQLite's read memo (test_read_memo.py), which
        # answers a repeat with none, is off here.
        reads._local.memo = None
        return conn

    monkeypatch.setattr(reads, "_connection", traced)
    pg_fetch = reads._pg_fetch

    async def pg_traced(name: str, params: Any) -> Any:  # PostgreSQL's fast path: asyncpg, no engine
        seen.append(_POSTGRES[name].sql)
        return await pg_fetch(name, params)

    monkeypatch.setattr(reads, "_pg_fetch", pg_traced)
    engine = gateway.app.state.deps.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def post(gateway: Gateway, key: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://gw") as client:
        r = await client.post("/graphql", json={"query": query, "variables": variables or {}},
                              headers={"Authorization": f"Bearer {key}"})
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


async def test_pending_videos_show_their_place_in_claim_order(gateway: Gateway, make_user: Any,
                                                              statements: list[str]) -> None:
    # given the gateway's user with one waiting video (their first), three more of theirs, then another user's
    deps = gateway.app.state.deps
    owner = await gateway.app.state.authenticator.authenticate(gateway.key)
    mine = [gateway.uuid] + [(await videos.generate_video(REQUEST, owner, deps=deps)).video.uuid for _ in range(3)]
    other = await make_user(credits=10)
    theirs = (await videos.generate_video(
        REQUEST, await gateway.app.state.authenticator.authenticate(other.key), deps=deps)).video.uuid
    for _ in range(2):  # the first POST takes Strawberry's path, the next the compiled one when it can
        # when the owner lists their videos
        statements.clear()
        page = (await post(gateway, gateway.key, LIST))["videos"]["videos"]
        # then each waits in claim order: every user's first video before anyone's second
        assert {v["uuid"]: v["queuePosition"] for v in page} == {mine[0]: 1, mine[1]: 3, mine[2]: 4, mine[3]: 5}
        # and the positions of the whole page came in one statement, not one per video
        assert sum("row_number" in s.lower() for s in statements) == 1, statements
        # the other user's first video goes second, before the owner's second
        assert (await post(gateway, other.key, ONE, {"uuid": theirs}))["video"]["queuePosition"] == 2


def _places(data: Any) -> dict[str, Any]:
    """uuid -> queuePosition of a page answered under any of the aliases above."""
    page = data.get("videos") or data["page"]
    return {v["uuid"]: v.get("queuePosition", v.get("place", "absent")) for v in page.get("videos") or page["all"]}


@pytest.mark.parametrize(("query", "variables", "reads"), [
    (SPREAD, None, 1), (INLINE, None, 1), (ALIASED, None, 1), (SKIPPED, {"on": True}, 1),
    (UNASKED, None, 0), (SKIPPED, {"on": False}, 0),
])
async def test_places_are_read_only_when_the_selection_asks_for_them(
        gateway: Gateway, statements: list[str], query: str, variables: dict[str, Any] | None, reads: int) -> None:
    # given the owner's waiting video and a second one
    deps = gateway.app.state.deps
    owner = await gateway.app.state.authenticator.authenticate(gateway.key)
    second = (await videos.generate_video(REQUEST, owner, deps=deps)).video.uuid
    for _ in range(2):  # Strawberry's path, then the compiled plan's
        statements.clear()
        # when the page is asked for
        places = _places(await post(gateway, gateway.key, query, variables))
        # then the places are there, through fragments and aliases, read in one statement, or not read at all
        assert places == ({gateway.uuid: 1, second: 2} if reads else {gateway.uuid: "absent", second: "absent"})
        assert sum("row_number" in s.lower() for s in statements) == reads, statements


async def test_a_page_without_waiting_videos_reads_no_place(gateway: Gateway, statements: list[str]) -> None:
    # given the owner's only video cancelled
    deps = gateway.app.state.deps
    await videos.cancel_video(gateway.uuid, await gateway.app.state.authenticator.authenticate(gateway.key), deps=deps)
    for _ in range(2):
        statements.clear()
        assert (await post(gateway, gateway.key, LIST))["videos"]["videos"][0]["queuePosition"] is None
        assert not any("row_number" in s.lower() for s in statements), statements


async def test_a_page_whose_pending_video_was_claimed_ranks_no_queue(gateway: Gateway,
                                                                      statements: list[str]) -> None:
    # given the owner's only video claimed by a runner: still PENDING, but waiting no more
    async with gateway.app.state.deps.db.writing() as uow:
        assert len(await VideosStore(uow).claim_due("r", now_ms=2**50, lease_ms=1000, limit=1)) == 1
        await uow.commit()
    for _ in range(2):
        statements.clear()
        page = (await post(gateway, gateway.key, LIST))["videos"]["videos"]
        assert [(v["status"], v["queuePosition"]) for v in page] == [("PENDING", None)]
        # then the page asked whether it waits (an index lookup) and ranked nothing: on SQLite no
        # ranking was sent; PostgreSQL's one statement holds the check as a one-time filter that
        # skips the ranking when it is false (EXPLAIN shows "One-Time Filter")
        ranking = [s for s in statements if "row_number" in s.lower()]
        if gateway.app.state.settings.database_url.startswith("postgresql"):
            assert len(ranking) == 1 and "exists" in ranking[0].lower(), statements
        else:
            assert not ranking, statements


async def test_mutations_that_queue_a_video_return_its_place(gateway: Gateway) -> None:
    # when the owner, whose first video waits, queues another
    made = (await post(gateway, gateway.key, GENERATE, {"input": REQUEST}))["generateVideo"]
    # then it waits second
    assert made["queuePosition"] == 2
    # when they cancel it: it has no place any more
    cancelled = (await post(gateway, gateway.key, CANCEL, {"uuid": made["uuid"]}))["cancelVideo"]["video"]
    assert cancelled == {"uuid": made["uuid"], "status": "CANCELLED", "queuePosition": None}
    # when they retry it, asking for the place through a fragment: the new video waits second
    retried = (await post(gateway, gateway.key, RETRY, {"uuid": made["uuid"]}))["retryVideo"]
    assert retried["uuid"] != made["uuid"] and retried["queuePosition"] == 2


async def test_a_started_video_has_no_position_and_the_subscription_shows_it(gateway: Gateway) -> None:
    # given the owner's waiting video, followed
    client = await gateway.connect()
    client.say({"id": "1", "type": "subscribe", "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
    snapshot = await client.receive()
    assert snapshot["payload"]["data"]["videoStatus"] == {"uuid": gateway.uuid, "status": "PENDING",
                                                          "queuePosition": 1}
    # when a runner claims it
    async with gateway.app.state.deps.db.writing() as uow:
        assert len(await VideosStore(uow).claim_due("r", now_ms=2**50, lease_ms=1000, limit=1)) == 1
        await uow.commit()
    # then it has no position any more, though it is still PENDING until a provider takes it
    data = await post(gateway, gateway.key, ONE, {"uuid": gateway.uuid})
    assert data["video"]["queuePosition"] is None
    await client.disconnect()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscriber_hears_each_move_of_its_place_and_nothing_else(gateway: Gateway, protocol: str,
                                                                         statements: list[str]) -> None:
    # given the owner's three waiting videos (the fixture's first), the third followed twice: the
    # first operation takes Strawberry's path, the second the fast path's lean subscriber when it is on
    deps = gateway.app.state.deps
    owner = await gateway.app.state.authenticator.authenticate(gateway.key)
    second, third = [(await videos.generate_video(REQUEST, owner, deps=deps)).video.uuid for _ in range(2)]
    client = await gateway.connect(protocol)
    start, data = ("subscribe", "next") if protocol == TRANSPORT_WS else ("start", "data")
    ids = ("1", "2")
    for op in ids:
        client.say({"id": op, "type": start, "payload": {"query": FOLLOW, "variables": {"uuid": third}}})
        message = await client.receive()
        assert message["type"] == data and message["id"] == op, message
        assert message["payload"]["data"]["videoStatus"] == {"uuid": third, "status": "PENDING",
                                                             "queuePosition": 3}

    completed: list[str] = []

    async def event() -> Any:
        """The next event, the same for both operations (a completion may come in between)."""
        sent: dict[str, Any] = {}
        while len(sent) < len(ids):
            message = await client.receive()
            if message["type"] == "complete":
                completed.append(message["id"])
                continue
            assert message["type"] == data and message["id"] not in sent, message
            sent[message["id"]] = message["payload"]["data"]["videoStatus"]
        first, other = sent.values()
        assert first == other
        return first

    # when a runner claims the first (one queue-moved message for its batch)
    async with deps.db.writing() as uow:
        assert len(await VideosStore(uow).claim_due("r", now_ms=2**50, lease_ms=60_000, limit=1)) == 1
        await uow.commit()
    statements.clear()
    await deps.publisher.queue_moved()
    # then the third moves up, though nothing of its own changed
    assert await event() == {"uuid": third, "status": "PENDING", "queuePosition": 2}
    # and the move was read once for every watched waiting video, not per subscriber
    assert sum("row_number" in s.lower() for s in statements) == 1, statements
    # when the second is cancelled, then when a move that changes nothing for the third is announced
    await videos.cancel_video(second, owner, deps=deps)
    assert await event() == {"uuid": third, "status": "PENDING", "queuePosition": 1}
    await deps.publisher.queue_moved()
    # then the next event is the third's own cancellation: the unmoved place was not sent again
    await videos.cancel_video(third, owner, deps=deps)
    assert await event() == {"uuid": third, "status": "CANCELLED", "queuePosition": None}
    while len(completed) < len(ids):
        message = await client.receive()
        assert message["type"] == "complete", message
        completed.append(message["id"])
    assert sorted(completed) == list(ids)
    await client.disconnect()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_change_of_a_waiting_video_carries_its_place(gateway: Gateway, protocol: str) -> None:
    # given the owner's waiting video, followed twice (Strawberry's path, then the lean subscriber's when on)
    deps = gateway.app.state.deps
    owner = await gateway.app.state.authenticator.authenticate(gateway.key)
    client = await gateway.connect(protocol)
    start, data = ("subscribe", "next") if protocol == TRANSPORT_WS else ("start", "data")
    for op in ("1", "2"):
        client.say({"id": op, "type": start, "payload": {"query": FOLLOW, "variables": {"uuid": gateway.uuid}}})
        assert (await client.receive())["payload"]["data"]["videoStatus"]["queuePosition"] == 1
    # when a change of it that is news is published while it still waits (its place unknown to the event)
    video = await videos.get_video(gateway.uuid, owner, deps=deps)
    await deps.publisher.video_changed(dataclasses.replace(video, progress=1))
    # then both operations send it with its place, read for the event
    sent = {}
    while len(sent) < 2:
        message = await client.receive()
        assert message["type"] == data, message
        sent[message["id"]] = message["payload"]["data"]["videoStatus"]
    assert sent == {op: {"uuid": gateway.uuid, "status": "PENDING", "queuePosition": 1} for op in ("1", "2")}
    await client.disconnect()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscriber_not_showing_its_place_hears_no_move(gateway: Gateway, protocol: str,
                                                               statements: list[str]) -> None:
    # given the owner's second waiting video followed twice without queuePosition in the selection
    # (Strawberry's path, then the lean subscriber's when the fast path is on)
    deps = gateway.app.state.deps
    owner = await gateway.app.state.authenticator.authenticate(gateway.key)
    second = (await videos.generate_video(REQUEST, owner, deps=deps)).video.uuid
    client = await gateway.connect(protocol)
    start, data = ("subscribe", "next") if protocol == TRANSPORT_WS else ("start", "data")
    statements.clear()
    for op in ("1", "2"):
        client.say({"id": op, "type": start, "payload": {"query": FOLLOW_PLAIN, "variables": {"uuid": second}}})
        message = await client.receive()
        assert (message["type"], message["payload"]["data"]["videoStatus"]) == (
            data, {"uuid": second, "status": "PENDING", "progress": 0})
    # and its place was never read
    assert not any("row_number" in s.lower() for s in statements), statements
    # when the first is claimed and the queue's move announced: the place moves 2 -> 1
    async with deps.db.writing() as uow:
        assert len(await VideosStore(uow).claim_due("r", now_ms=2**50, lease_ms=60_000, limit=1)) == 1
        await uow.commit()
    await deps.publisher.queue_moved()
    # then nothing is sent for it (it would repeat the last event): the next events are its cancellation
    await videos.cancel_video(second, owner, deps=deps)
    events = [await client.receive() for _ in range(4)]
    assert sorted((m["type"], m["id"]) for m in events) == sorted(
        [(data, "1"), (data, "2"), ("complete", "1"), ("complete", "2")]), events
    assert all(m["payload"]["data"]["videoStatus"]["status"] == "CANCELLED" for m in events if m["type"] == data)
    await client.disconnect()
