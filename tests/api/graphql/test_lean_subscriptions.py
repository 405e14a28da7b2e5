"""Subscriptions to a document Strawberry has accepted before run in the lean loop, and their
subscribers receive exactly what Strawberry's own loop sends: the snapshot, each change, errors
rendered with their codes, and ``complete``."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.view import KensaGraphQL, _TransportWSHandler
from kensa_gql.app import create_app
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.services import videos
from kensa_gql.settings import Settings

FOLLOW = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress creditsUsed } }"
REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


class Socket:
    """The WebSocket port of Strawberry's handler, in memory: it records what is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.view: Any = None

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        self.sent.append({"closed": code, "reason": reason})
        self.arrived.set()

    async def until(self, check: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while not check(self.sent):
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent


class Harness:
    def __init__(self, app: Any, view: KensaGraphQL, principal: Any, uuid: str) -> None:
        self.app, self.view, self.principal, self.uuid = app, view, principal, uuid

    async def subscribe(self, uuid: str | None = None) -> tuple[_TransportWSHandler, Socket]:
        scope = {"type": "websocket", "path": "/graphql", "headers": [], "app": self.app, "query_string": b""}
        context = Context(HTTPConnection(scope))
        context.sign_in(self.principal)
        socket = Socket()
        handler = _TransportWSHandler(view=self.view, websocket=socket, context=context,  # type: ignore[arg-type]
                                      root_value=None, schema=self.view.schema,
                                      connection_init_wait_timeout=timedelta(seconds=10),
                                      max_subscriptions_per_connection=20)
        handler.connection_acknowledged = True
        await handler.handle_subscribe({"id": "op", "type": "subscribe",  # type: ignore[typeddict-item]
                                        "payload": {"query": FOLLOW, "variables": {"uuid": uuid or self.uuid}}})
        return handler, socket

    async def change(self, progress: int, *, delete: bool = False) -> None:
        state = self.app.state
        async with state.deps.db.writing() as uow:
            store = VideosStore(uow)
            video = await store.get_by_uuid(self.uuid)
            assert video is not None
            if delete:
                await store.soft_delete(video.id, 1)
            updated = await store.update_status(video, status=VideoStatus.GENERATING.value, progress=progress)
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
        yield Harness(app, view, principal, made.video.uuid)


def lean(handler: _TransportWSHandler) -> bool:
    """Whether the operation's task is waiting inside the lean loop (walking what it awaits)."""
    task = handler.operations["op"].task
    assert task is not None
    waiting: Any = task.get_coro()
    names = []
    while waiting is not None:
        names.append(getattr(waiting, "__qualname__", type(waiting).__name__))
        waiting = getattr(waiting, "cr_await", None) or getattr(waiting, "ag_await", None)
    return "run_lean" in names


def nexts(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda sent: sum(m.get("type") == "next" for m in sent) >= n


def finished(sent: list[dict[str, Any]]) -> bool:
    return any(m.get("type") in ("complete", "error") or "closed" in m for m in sent)


async def settle(*handlers: _TransportWSHandler) -> None:
    for handler in handlers:
        for operation in list(handler.operations.values()):
            if operation.task is not None:
                operation.task.cancel()
                await asyncio.gather(operation.task, return_exceptions=True)


Step = Callable[[], Awaitable[None]]


async def test_a_known_document_streams_through_the_lean_loop_alike(harness: Harness) -> None:
    first, first_socket = await harness.subscribe()          # Strawberry's loop; the document is remembered
    await first_socket.until(nexts(1))
    second, second_socket = await harness.subscribe()        # the lean loop
    await second_socket.until(nexts(1))
    assert not lean(first) and lean(second)
    await harness.change(10)
    await harness.change(20)
    for socket in (first_socket, second_socket):
        await socket.until(nexts(3))
    assert first_socket.sent == second_socket.sent
    assert [m["payload"]["data"]["videoStatus"]["progress"] for m in second_socket.sent] == [0, 10, 20]
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
    assert first_socket.sent == second_socket.sent
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


async def test_a_connected_socket_keeps_neither_its_timeout_task_nor_its_key(harness: Harness,
                                                                              make_user: Any) -> None:
    user = await make_user(credits=1)
    scope = {"type": "websocket", "path": "/graphql", "headers": [], "app": harness.app, "query_string": b""}
    socket = Socket()
    context = Context(HTTPConnection(scope))
    handler = _TransportWSHandler(view=harness.view, websocket=socket, context=context,  # type: ignore[arg-type]
                                  root_value=None, schema=harness.view.schema,
                                  connection_init_wait_timeout=timedelta(seconds=10))
    handler.on_request_accepted()
    await handler.handle_connection_init({"type": "connection_init",  # type: ignore[typeddict-item]
                                          "payload": {"Authorization": f"Bearer {user.key}"}})
    assert socket.sent == [{"type": "connection_ack"}]
    assert handler.connection_init_timeout_task is None and context.connection_params is None
    assert (await context.principal()).email == user.email


async def test_a_lean_subscription_holds_few_objects(harness: Harness) -> None:
    # A budget for what each subscriber costs the cyclic collector (and memory): with ten
    # thousand subscribers, every object here is ten thousand objects to scan in a full collection.
    warm, warm_socket = await harness.subscribe()
    await warm_socket.until(nexts(1))
    gc.collect()
    before = len(gc.get_objects())
    held = []
    for _ in range(50):
        handler, socket = await harness.subscribe()
        await socket.until(nexts(1))
        held.append(handler)
    gc.collect()
    per_subscriber = (len(gc.get_objects()) - before) / 50
    assert all(lean(h) for h in held)
    assert per_subscriber < 60, per_subscriber
    await settle(warm, *held)
