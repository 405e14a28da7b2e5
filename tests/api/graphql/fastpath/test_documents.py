"""A document Strawberry has accepted once is answered by the fast path afterwards (or, when its
plan cannot, by Strawberry again), with exactly the response Strawberry gives: data, errors and
their codes, headers. Mutations always run once, through Strawberry."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.extensions import QueryDepthLimiter

from kensa_gql.api.graphql.fastpath import post
from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments, inert
from kensa_gql.api.graphql.schema import KensaSchema, Query
from kensa_gql.api.graphql.view import KensaGraphQL
from kensa_gql.app import create_app
from kensa_gql.settings import Settings
from tests.api.graphql.wire import GENERATE, REQUEST, VIDEO_FIELDS

VIDEO = f"query Video($uuid: ID!) {{ video(uuid: $uuid) {{ {VIDEO_FIELDS} }} }}"
VIDEOS = f"query {{ videos(page: 1, pageSize: 5) {{ total page pageSize videos {{ {VIDEO_FIELDS} }} }} }}"
DELETE = "mutation Delete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }"
TWO = "query A { me { email } } query B { models { id } }"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


class Client:
    def __init__(self, app: Starlette, http: httpx.AsyncClient, key: str) -> None:
        self.app = app
        self.http = http
        self.key = key

    @property
    def view(self) -> KensaGraphQL:
        route = next(r for r in self.app.routes if isinstance(r, Route) and r.path == "/graphql")
        view: KensaGraphQL = route.app  # type: ignore[assignment]
        return view

    @property
    def remembered(self) -> PreparedDocuments:
        documents = self.view.documents
        assert documents is not None, "the fast path is on by default"
        return documents

    async def post(self, body: Any, **headers: str) -> httpx.Response:
        return await self.http.post("/graphql", content=json.dumps(body),
                                    headers={"Authorization": f"Bearer {self.key}",
                                             "Content-Type": "application/json", **headers})

    async def twice(self, body: Any) -> tuple[httpx.Response, httpx.Response]:
        """Strawberry's answer (first sight of the document), then the shortcut's."""
        first = await self.post(body)
        assert self.remembered.get(body["query"]) is not None
        return first, await self.post(body)


@pytest.fixture
async def client(settings: Settings, make_user: Any) -> AsyncIterator[Client]:
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        user = await make_user(credits=50)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield Client(app, http, user.key)


def same(first: httpx.Response, second: httpx.Response) -> dict[str, Any]:
    assert (first.status_code, first.headers["content-type"]) == (second.status_code, second.headers["content-type"])
    assert first.json() == second.json()
    body: dict[str, Any] = second.json()
    return body


async def uuid_of_new_video(client: Client) -> str:
    r = await client.post({"query": GENERATE, "variables": {"input": REQUEST}})
    uuid: str = r.json()["data"]["generateVideo"]["uuid"]
    return uuid


async def test_reads_answer_alike(client: Client) -> None:
    uuid = await uuid_of_new_video(client)
    body = same(*await client.twice({"query": VIDEO, "variables": {"uuid": uuid}}))
    assert body["data"]["video"]["uuid"] == uuid
    body = same(*await client.twice({"query": VIDEOS}))
    assert body["data"]["videos"]["total"] == 1
    body = same(*await client.twice({"query": VIDEO, "variables": {"uuid": UNKNOWN}}))
    assert body == {"data": {"video": None}}


async def test_errors_answer_alike_with_their_codes(client: Client) -> None:
    body = same(*await client.twice({"query": DELETE, "variables": {"uuid": UNKNOWN}}))
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    body = same(*await client.twice({"query": VIDEO, "variables": {"uuid": {"a": 1}}}))  # not an ID: refused
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    client.key = "kg_" + "x" * 45
    body = same(*await client.twice({"query": VIDEOS}))
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_mutation_runs_once_per_request(client: Client) -> None:
    first, second = await client.twice({"query": GENERATE, "variables": {"input": REQUEST}})
    assert first.json()["data"]["generateVideo"]["uuid"] != second.json()["data"]["generateVideo"]["uuid"]
    me = await client.post({"query": "{ me { credits { available frozen } } }"})
    price = first.json()["data"]["generateVideo"]["creditsUsed"]
    assert me.json()["data"]["me"]["credits"] == {"available": 50 - 2 * price, "frozen": 2 * price}


async def test_the_named_operation_is_the_one_run(client: Client) -> None:
    for name, field in (("A", "me"), ("B", "models"), (None, "me")):  # none named: the first, as Strawberry
        body = same(*await client.twice({"query": TWO, "operationName": name}))
        assert list(body["data"]) == [field]


async def answered(client: Client, body: Any, **headers: str) -> bool:
    """Whether post.answer took this POST (and then sent a response), with nothing sent otherwise."""
    raw = json.dumps(body).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = {"content-type": "application/json", "authorization": f"Bearer {client.key}", **headers}
    scope = {"type": "http", "method": "POST", "path": "/graphql", "query_string": b"", "app": client.app,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    answers = client.view.post_answers
    assert answers is not None
    taken = await post.answer(answers, scope, receive, send, raw)
    assert bool(sent) == taken
    return taken


async def test_only_remembered_plain_posts_take_the_shortcut(client: Client) -> None:
    query = "{ models { id } }"
    assert not await answered(client, {"query": query})  # not seen yet
    await client.post({"query": query})
    assert await answered(client, {"query": query})
    for refused, headers in (([{"query": query}], {}),                                     # a batch
                             ({"query": query, "extensions": {"persistedQuery": {}}}, {}),
                             ({"query": query}, {"accept": "multipart/mixed"}),            # streaming
                             ({"query": query}, {"content-type": "text/plain"}),
                             ({"query": query, "variables": [1]}, {}),
                             ({"query": "{ models { id name } }"}, {})):                    # another text
        assert not await answered(client, refused, **headers)
    subscription = f'subscription {{ videoStatus(uuid: "{UNKNOWN}") {{ uuid }} }}'
    await client.post({"query": subscription})
    assert not await answered(client, {"query": subscription})


async def test_a_syntax_error_is_never_remembered(client: Client) -> None:
    r = await client.post({"query": "{ videos { "})
    assert r.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert client.remembered.get("{ videos { ") is None


def test_an_extension_it_does_not_know_turns_the_shortcut_off(settings: Settings) -> None:
    schema = KensaSchema(query=Query, extensions=[lambda: QueryDepthLimiter(max_depth=5)])
    assert not inert(schema)
    assert inert(KensaSchema(query=Query))


async def test_an_answered_read_leaves_nothing_for_the_cyclic_collector(client: Client) -> None:
    uuid = await uuid_of_new_video(client)
    body = {"query": VIDEO, "variables": {"uuid": uuid}}
    await client.twice(body)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        r = await client.post(body)
        gc.collect()
        left = [type(o).__qualname__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert r.json()["data"]["video"]["uuid"] == uuid
    assert "Execution" not in left and "Context" not in left, left[:20]
