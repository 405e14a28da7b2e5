"""Subscriptions to a document Strawberry has accepted before are followed by lean subscribers (a
registration in the fan-out, no task), and their sockets receive exactly what Strawberry's own
loop sends: the snapshot, each change, errors rendered with their codes, and ``complete``."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.api.graphql.ws.connection import Connection, Operation, SocketConfig
from kensa_gql.api.graphql.ws.subscribers import Subscriber
from kensa_gql.app import create_app
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.services import videos
from kensa_gql.settings import Settings

FOLLOW = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress creditsUsed } }"
REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


class Socket:
    """The ASGI send of one socket, in memory: it records every message sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.arrived = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.raw.append(message["text"])
            self.sent.append(json.loads(message["text"]))
        else:
            self.sent.append({"closed": message.get("code"), "reason": message.get("reason")})
        self.arrived.set()

    async def until(self, check: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while not check(self.sent):
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent


class Harness:
    def __init__(self, app: Any, config: SocketConfig, principal: Any, uuid: str) -> None:
        self.app, self.config, self.principal, self.uuid = app, config, principal, uuid

    def connection(self, socket: Socket) -> Connection:
        scope = {"type": "websocket", "path": "/graphql", "headers": [], "app": self.app, "query_string": b""}
        conn = Connection(self.config, scope, socket.send)  # type: ignore[arg-type]
        conn.principal = self.principal
        conn.acknowledged = True
        conn.deadline = None
        return conn

    async def subscribe(self, uuid: str | None = None, *, op_id: str = "op") -> tuple[Connection, Socket]:
        socket = Socket()
        conn = self.connection(socket)
        payload = {"query": FOLLOW, "variables": {"uuid": uuid or self.uuid}}
        await conn.received(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        return conn, socket

    async def change(self, progress: int, *, delete: bool = False,
                     status: VideoStatus = VideoStatus.GENERATING) -> None:
        state = self.app.state
        async with state.deps.db.writing() as uow:
            store = VideosStore(uow)
            video = await store.get_by_uuid(self.uuid)
            assert video is not None
            if delete:
                await store.soft_delete(video.id, 1)
            updated = await store.update_status(video, status=status.value, progress=progress)
            await uow.commit()
        await state.events.video_changed(updated)


@pytest.fixture
async def harness(settings: Settings, make_user: Any) -> AsyncIterator[Harness]:
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        user = await make_user(credits=10)
        principal = await app.state.authenticator.authenticate(user.key)
        made = await videos.generate_video(REQUEST, principal, deps=app.state.deps)
        view = next(r.app for r in app.routes if getattr(r, "path", "") == "/graphql")
        assert view.sockets is not None, "the fast path is on by default"
        yield Harness(app, view.sockets, principal, made.video.uuid)


def lean(conn: Connection, op_id: str = "op") -> bool:
    """Whether the operation is a lean subscriber, started and holding no task."""
    op = conn.operations.get(op_id)
    return isinstance(op, Subscriber) and op.task is None


def strawberry(conn: Connection, op_id: str = "op") -> bool:
    op = conn.operations.get(op_id)
    return isinstance(op, Operation) and op.task is not None


def nexts(n: int, kind: str = "next") -> Callable[[list[dict[str, Any]]], bool]:
    return lambda sent: sum(m.get("type") == kind for m in sent) >= n


def finished(sent: list[dict[str, Any]]) -> bool:
    return any(m.get("type") in ("complete", "error") or "closed" in m for m in sent)


async def settle(*conns: Connection) -> None:
    for conn in conns:
        await conn.shutdown()


async def test_a_known_document_streams_through_a_lean_subscriber_alike(harness: Harness) -> None:
    first, first_socket = await harness.subscribe()          # Strawberry's loop; the document is remembered
    await first_socket.until(nexts(1))
    second, second_socket = await harness.subscribe()        # a lean subscriber
    await second_socket.until(nexts(1))
    assert strawberry(first) and lean(second)
    await harness.change(10)
    await harness.change(20)
    for socket in (first_socket, second_socket):
        await socket.until(nexts(3))
    assert first_socket.raw == second_socket.raw             # byte for byte
    assert [m["payload"]["data"]["videoStatus"]["progress"] for m in second_socket.sent] == [0, 10, 20]
    await settle(first, second)


async def test_a_terminal_change_sends_next_then_complete_alike(harness: Harness) -> None:
    kind = "next"
    first, first_socket = await harness.subscribe()
    await first_socket.until(nexts(1, kind))
    second, second_socket = await harness.subscribe()
    await second_socket.until(nexts(1, kind))
    assert lean(second)
    await harness.change(100, status=VideoStatus.COMPLETED)
    for socket in (first_socket, second_socket):
        await socket.until(finished)
    assert first_socket.raw == second_socket.raw
    assert [m["type"] for m in second_socket.sent] == [kind, kind, "complete"]
    assert second.operations == {} and harness.app.state.events.watcher_count == 0
    await settle(first, second)


async def test_a_deleted_video_ends_both_loops_with_not_found(harness: Harness) -> None:
    first, first_socket = await harness.subscribe()
    await first_socket.until(nexts(1))
    second, second_socket = await harness.subscribe()
    await second_socket.until(nexts(1))
    assert lean(second)
    await harness.change(30, delete=True)
    for socket in (first_socket, second_socket):
        await socket.until(finished)
    assert first_socket.raw == second_socket.raw
    last_next, complete = second_socket.sent[-2:]
    assert last_next["payload"]["data"] is None
    assert [e["extensions"]["code"] for e in last_next["payload"]["errors"]] == ["NOT_FOUND"]
    assert complete == {"id": "op", "type": "complete"}
    await settle(first, second)


async def test_a_refused_subscription_is_answered_by_strawberry(harness: Harness) -> None:
    first, first_socket = await harness.subscribe()
    await first_socket.until(nexts(1))                       # the document is now known
    refused, refused_socket = await harness.subscribe(UNKNOWN)
    sent = await refused_socket.until(finished)
    # Strawberry's answer: an `error` message (a list of errors) for this operation only.
    assert [m["type"] for m in sent] == ["error"]
    assert [e["extensions"]["code"] for e in sent[0]["payload"]] == ["NOT_FOUND"]
    await settle(first, refused)


async def test_a_slow_socket_gets_the_latest_change_once_it_can_take_it(harness: Harness) -> None:
    # given a lean subscriber whose socket stops taking messages (its transport buffer is full)
    warm, warm_socket = await harness.subscribe()
    await warm_socket.until(nexts(1))
    conn, socket = await harness.subscribe()
    await socket.until(nexts(1))
    assert lean(conn)
    writable = asyncio.Event()
    fast_send = socket.send

    async def slow_send(message: dict[str, Any]) -> None:
        await writable.wait()
        await fast_send(message)

    conn._send = slow_send  # type: ignore[assignment]
    # when three changes arrive while it cannot send
    for progress in (10, 20, 30):
        await harness.change(progress)
    subscriber = conn.operations["op"]
    assert isinstance(subscriber, Subscriber)
    for _ in range(1000):                                    # until the last change has reached it
        if subscriber.pending is not None and subscriber.pending.progress == 30:
            break
        await asyncio.sleep(0.01)
    assert subscriber.task is not None                       # one task, only while it is stuck
    writable.set()
    await socket.until(nexts(3))
    await asyncio.sleep(0.05)
    # then it gets the first (already under way) and the latest, and is lean again
    assert [m["payload"]["data"]["videoStatus"]["progress"] for m in socket.sent] == [0, 10, 30]
    assert lean(conn)
    await settle(warm, conn)


async def test_a_lean_subscriber_holds_few_objects(harness: Harness) -> None:
    # A budget for what each subscriber costs the cyclic collector (and memory): with ten
    # thousand subscribers, every object here is ten thousand objects to scan in a full collection.
    warm, warm_socket = await harness.subscribe()
    await warm_socket.until(nexts(1))
    gc.collect()
    before = len(gc.get_objects())
    held = []
    for _ in range(50):
        conn, socket = await harness.subscribe()
        await socket.until(nexts(1))
        held.append((conn, socket))
    await asyncio.sleep(0.05)
    gc.collect()
    per_subscriber = (len(gc.get_objects()) - before) / 50
    assert all(lean(conn) for conn, _ in held)
    # Ours: the Connection, its operations and the Subscriber (Strawberry's loop held ~60). The
    # rest is this test's: the fake socket, its lists, event and bound method, the scope, the
    # decoded snapshot it keeps.
    assert per_subscriber < 25, per_subscriber
    await settle(warm, *(conn for conn, _ in held))


async def test_subscribers_of_one_operation_send_one_shared_message(harness: Harness) -> None:
    # One change is executed and encoded once for every lean subscriber running the same
    # operation with the same variables and id: they send the very same string object.
    warm, warm_socket = await harness.subscribe()
    await warm_socket.until(nexts(1))
    (a, a_socket), (b, b_socket) = await harness.subscribe(), await harness.subscribe()
    (c, c_socket) = await harness.subscribe(op_id="other id")
    for socket in (a_socket, b_socket, c_socket):
        await socket.until(nexts(1))
    assert lean(a) and lean(b) and lean(c, "other id")
    await harness.change(40)
    for socket in (a_socket, b_socket, c_socket):
        await socket.until(nexts(2))
    assert a_socket.raw[-1] is b_socket.raw[-1]
    assert json.loads(c_socket.raw[-1])["id"] == "other id"
    assert json.loads(c_socket.raw[-1])["payload"] == json.loads(a_socket.raw[-1])["payload"]
    await settle(warm, a, b, c)
