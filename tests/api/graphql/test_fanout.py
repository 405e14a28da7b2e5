"""One status change is executed and encoded once for all of its subscribers, yet each
subscriber still gets exactly what its own operation asks for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.api.graphql import fanout
from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.schema import KensaSchema, build_schema
from kensa_gql.app import create_app
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.services import videos
from kensa_gql.settings import Settings

FOLLOW = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"
FOLLOW_MORE = "subscription More($uuid: ID!) { videoStatus(uuid: $uuid) { id status progress creditsUsed } }"
REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


class Gateway:
    def __init__(self, app: Starlette, schema: KensaSchema, key: str, uuid: str) -> None:
        self.app = app
        self.schema = schema
        self.key = key
        self.uuid = uuid

    def context(self) -> Context:
        scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": [
            (b"authorization", f"Bearer {self.key}".encode())], "app": self.app, "query_string": b""}
        return Context(Request(scope))

    async def follow(self, query: str = FOLLOW, uuid: str | None = None) -> AsyncIterator[Any]:
        stream = await self.schema.subscribe(query, variable_values={"uuid": uuid or self.uuid},
                                             context_value=self.context())
        first = await anext(stream)
        assert not first.errors, first.errors
        return stream

    async def change(self, progress: int) -> None:
        """What the runner does: a committed compare-and-set, then the event."""
        state = self.app.state
        async with state.deps.db.writing() as uow:
            store = VideosStore(uow)
            video = await store.get_by_uuid(self.uuid)
            assert video is not None
            updated = await store.update_status(video, status=VideoStatus.GENERATING.value, progress=progress)
            await uow.commit()
        await state.events.video_changed(updated)


@pytest.fixture
async def gateway(settings: Settings, make_user: Any) -> AsyncIterator[Gateway]:
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        user = await make_user(credits=10)
        principal = await app.state.authenticator.authenticate(user.key)
        made = await videos.generate_video(REQUEST, principal, deps=app.state.deps)
        yield Gateway(app, build_schema(settings), user.key, made.video.uuid)


async def test_subscribers_running_one_operation_share_one_result(gateway: Gateway) -> None:
    streams = [await gateway.follow() for _ in range(5)]
    await gateway.change(progress=10)
    results = [await anext(s) for s in streams]
    assert all(r.data is results[0].data for r in results)  # executed once
    assert results[0].data == {"videoStatus": {"uuid": gateway.uuid, "status": "GENERATING", "progress": 10}}
    for s in streams:
        await s.aclose()


async def test_each_operation_still_gets_its_own_selection(gateway: Gateway) -> None:
    plain, more = await gateway.follow(), await gateway.follow(FOLLOW_MORE)
    upper = await gateway.follow(uuid=gateway.uuid.upper())
    await gateway.change(progress=20)
    a, b, c = await anext(plain), await anext(more), await anext(upper)
    assert a.data == c.data == {"videoStatus": {"uuid": gateway.uuid, "status": "GENERATING", "progress": 20}}
    assert b.data == {"videoStatus": {"id": gateway.uuid, "status": "GENERATING", "progress": 20, "creditsUsed": 1}}
    await gateway.change(progress=30)  # the next change is executed afresh
    assert (await anext(plain)).data == {"videoStatus": {"uuid": gateway.uuid, "status": "GENERATING",
                                                         "progress": 30}}
    for s in (plain, more, upper):
        await s.aclose()


def test_a_shared_result_is_encoded_once_with_each_operations_id() -> None:
    class Executed:  # stands in for a subscription event's executor, remembering one result
        operation = object()
        variable_values = None

    data = {"videoStatus": {"uuid": "u", "status": "PENDING", "progress": 0, "prompt": "über"}}
    result = fanout.ExecutionResult(data=data)
    fanout.SharedEventExecution._remember(Executed(), {}, ("k", ()), result)  # type: ignore[arg-type]
    first = fanout.encode_json({"id": "a", "type": "next", "payload": {"data": data}})
    again = fanout.encode_json({"id": 'b"2', "type": "next", "payload": {"data": data}})
    assert json.loads(first) == {"id": "a", "type": "next", "payload": {"data": data}}
    assert json.loads(again) == {"id": 'b"2', "type": "next", "payload": {"data": data}}
    assert "über" in first  # UTF-8, like json.dumps(ensure_ascii=False)


def test_other_messages_are_plain_json() -> None:
    message = {"id": "x", "type": "next", "payload": {"data": {"a": 1}, "errors": [{"message": "m"}]}}
    assert json.loads(fanout.encode_json(message)) == message
    assert json.loads(fanout.encode_json({"type": "connection_ack"})) == {"type": "connection_ack"}
