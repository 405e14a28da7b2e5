"""Compiled queries over real HTTP: the same status, headers and bytes as plain Strawberry gives.

Every case is posted to a live server three times: once with the shortcut off (Strawberry's own
view, parsing and executing), then twice with it on (the first remembers the document, the
second is answered by fastpath/post.py). The two answers must not differ, and the second must
have been answered the way the case says: by the compiled plan, or by Strawberry for the reason
given. (test_http_differential.py compares with a server whose fast path is off altogether.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments
from tests.api.graphql.wire import VIDEO_FIELDS, generate
from tests.conftest import Serve, User
from tests.support import wait_for_status

READ = "query Video($uuid: ID!) { video(uuid: $uuid) { uuid status progress videoUrl creditsUsed } }"
FULL = f"query Video($uuid: ID!) {{ video(uuid: $uuid) {{ {VIDEO_FIELDS} }} }}"
LIST = f"""query Videos($page: Int!, $size: Int!) {{
  videos(page: $page, pageSize: $size) {{ total page pageSize videos {{ {VIDEO_FIELDS} }} }}
}}"""
LITERAL_LIST = f"{{ videos(page: 1, pageSize: 2) {{ total page pageSize videos {{ {VIDEO_FIELDS} }} }} }}"
DEFAULT_LIST = "{ videos { total page pageSize videos { uuid createdAt } } }"
DEFAULTED = "query Videos($size: Int = 1) { videos(pageSize: $size) { pageSize videos { uuid } } }"
NULLABLE = "query Videos($size: Int) { videos(pageSize: $size) { pageSize videos { uuid } } }"
ALIASES = """query Two($a: ID!, $b: ID!) {
  first: video(uuid: $a) { id key: uuid state: status }
  second: video(uuid: $b) { uuid uuid status }
  again: video(uuid: $a) { progress }
}"""
FRAGMENTS = """
fragment Basics on Video { uuid status ...More }
fragment More on Video { progress createdAt }
query Fragments($uuid: ID!) { video(uuid: $uuid) { ...Basics videoUrl ... on Video { model } ... { duration } } }
"""
TYPENAMES = "query Names($uuid: ID!) { __typename video(uuid: $uuid) { __typename uuid } " \
            "videos(pageSize: 2) { __typename videos { __typename id } } me { __typename } }"
DIRECTIVES = """query Switches($uuid: ID!, $withUrl: Boolean!, $noStatus: Boolean!) {
  video(uuid: $uuid) {
    uuid videoUrl @include(if: $withUrl) status @skip(if: $noStatus)
    ... on Video @include(if: $withUrl) { thumbnailUrl }
    ...Sizes @skip(if: $noStatus)
    progress @skip(if: false) model @include(if: false)
  }
}
fragment Sizes on Video { fileSize duration }"""
MERGED = "{ videos(pageSize: 3) { videos { uuid } videos { status } total } videos(pageSize: 3) { page } }"
ACCOUNT = "{ me { id email credits { available frozen used total } } }"
MODELS = "{ models { __typename id name provider modes maxDuration durations resolutions aspectRatios enabled } }"
TASK = "query Task($uuid: ID!) { videoTask(uuid: $uuid) { uuid status progress } }"
HISTORY = """query History($size: Int!) {
  creditHistory(pageSize: $size) { total page pageSize transactions { id transNo transType credits balanceAfter
                                                                      videoUuid createdAt } }
}"""
NAMED = "query A { me { email } } query B { models { id } }"
# Pages holding a waiting video, its place asked for directly, through a fragment and an inline fragment.
PLACES = f"""query Places($page: Int!, $size: Int!) {{
  videos(page: $page, pageSize: $size) {{ total videos {{ {VIDEO_FIELDS} queuePosition }} }}
}}"""
PLACES_IN_FRAGMENTS = """fragment Place on Video { status queuePosition }
query PlacesInFragments { videos { videos { uuid ...Place ... on Video { again: queuePosition } } } }"""
PLACE = "query Place($uuid: ID!) { video(uuid: $uuid) { uuid queuePosition } }"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
COMPILED = "compiled"


@dataclass
class Case:
    query: str
    variables: dict[str, Any] | None = None
    key: str = "owner"          # owner, other, none or bad
    outcome: str = COMPILED     # how the second remembered POST is answered
    operation: str | None = None
    shows: str | None = None    # text the answer must hold (that the case reaches what it is for)


@dataclass
class World:
    http: httpx.AsyncClient
    documents: PreparedDocuments
    keys: dict[str, str | None]
    videos: dict[str, str]


@pytest.fixture
async def world(serve: Serve, make_user: Any) -> AsyncIterator[World]:
    owner: User = await make_user(credits=100)
    other: User = await make_user(credits=100)
    # One video made by a server with the runner, which then stops; the rest stay as they are.
    maker = serve()
    async with httpx.AsyncClient(base_url=maker.url, timeout=30) as http:
        done = await generate(http, owner.key)
        await wait_for_status(http, owner, done, {"COMPLETED"})
    maker.stop()
    server = serve(run_worker=False)
    route = next(r for r in server.app.routes if isinstance(r, Route) and r.path == "/graphql")
    documents: PreparedDocuments = route.app.documents  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        pending = await generate(http, owner.key, prompt="a second one")
        foreign = await generate(http, other.key)
        keys = {"owner": owner.key, "other": other.key, "none": None, "bad": "kg_" + "x" * 45}
        documents.counts.clear()
        yield World(http, documents, keys, {"done": done, "pending": pending, "foreign": foreign})


def cases(videos: dict[str, str]) -> list[Case]:
    done, pending, foreign = videos["done"], videos["pending"], videos["foreign"]
    return [
        Case(READ, {"uuid": done}),
        Case(READ, {"uuid": pending, "unused": [1, 2]}),
        Case(FULL, {"uuid": done}),
        Case(FULL, {"uuid": pending}),
        Case(LIST, {"page": 1, "size": 20}),
        Case(LIST, {"page": 2, "size": 1}),
        Case(LIST, {"page": 9, "size": 5}),
        Case(LITERAL_LIST),
        Case(DEFAULT_LIST),
        Case(DEFAULTED),
        Case(DEFAULTED, {"size": 2}),
        Case(NULLABLE, {}),
        # null into pageSize: Int! passes validation and fails in graphql-core's argument coercion.
        Case(NULLABLE, {"size": None}, outcome="fallback: GraphQLError"),
        Case(ALIASES, {"a": done, "b": pending}),
        Case(FRAGMENTS, {"uuid": done}),
        Case(TYPENAMES, {"uuid": done}),
        *[Case(DIRECTIVES, {"uuid": done, "withUrl": w, "noStatus": s}) for w in (True, False) for s in (True, False)],
        Case(MERGED),
        Case(ACCOUNT),
        Case(MODELS),
        Case(MODELS, key="none"),
        Case(TASK, {"uuid": pending}),
        Case(HISTORY, {"size": 3}),
        Case(PLACES, {"page": 1, "size": 20}, shows='"queuePosition":1'),
        Case(PLACES, {"page": 1, "size": 20}, key="other", shows='"queuePosition":2'),
        Case(PLACES_IN_FRAGMENTS, shows='"queuePosition":1,"again":1'),
        Case(PLACE, {"uuid": pending}, shows='"queuePosition":1'),
        Case(PLACE, {"uuid": done}, shows='"queuePosition":null'),
        Case(NAMED, operation="B"),
        Case(NAMED, operation="A"),
        Case(NAMED),
        # Errors and nulls.
        Case(READ, {"uuid": UNKNOWN}),
        Case(READ, {"uuid": "not a uuid"}),
        Case(READ, {"uuid": foreign}),
        Case(READ, {"uuid": done}, key="other"),
        Case(READ, {"uuid": 12}),  # ID takes ints: graphql-core's coercion makes it "12"
        Case(READ, {"uuid": done}, key="none", outcome="fallback: Unauthenticated"),
        Case(READ, {"uuid": done}, key="bad", outcome="fallback: Unauthenticated"),
        Case(ACCOUNT, key="none", outcome="fallback: Unauthenticated"),
        Case(READ, {"uuid": {"a": 1}}, outcome="fallback: variables with errors"),
        Case(READ, {"uuid": True}, outcome="fallback: variables with errors"),
        Case(READ, {}, outcome="fallback: variables with errors"),
        Case(READ, None, outcome="fallback: variables with errors"),
        Case(READ, {"uuid": None}, outcome="fallback: variables with errors"),
        Case(LIST, {"page": "1", "size": 20}, outcome="fallback: variables with errors"),
        Case(LIST, {"page": 1, "size": 2**31}, outcome="fallback: variables with errors"),
        Case(LIST, {"page": 1, "size": 1.5}, outcome="fallback: variables with errors"),
        Case(LIST, {"page": 1, "size": 500}, outcome="fallback: BadUserInput"),
        Case(LIST, {"page": 0, "size": 5}, outcome="fallback: BadUserInput"),
        Case(NAMED, operation="C"),  # an unknown operation: Strawberry's path
    ]


def _comparable(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    # RateLimit counts down from one request to the next (its policy header stays compared).
    headers = [(k, v) for k, v in r.headers.multi_items() if k not in ("x-request-id", "date", "ratelimit")]
    return r.status_code, headers, r.content


async def test_the_compiled_path_answers_like_plain_strawberry(world: World) -> None:
    documents = world.documents
    for case in cases(world.videos):
        key = world.keys[case.key]
        body: dict[str, Any] = {"query": case.query, "variables": case.variables}
        if case.operation is not None:
            body["operationName"] = case.operation
        headers = {"Authorization": f"Bearer {key}"} if key else {}

        documents.enabled = False
        plain = await world.http.post("/graphql", json=body, headers=headers)
        documents.enabled = True
        await world.http.post("/graphql", json=body, headers=headers)  # remembered (already, mostly)
        before = documents.counts.copy()
        shortcut = await world.http.post("/graphql", json=body, headers=headers)

        assert _comparable(shortcut) == _comparable(plain), (case, plain.text, shortcut.text)
        assert case.shows is None or case.shows in plain.text, (case, plain.text)
        outcome = [reason for reason, n in (documents.counts - before).items() if n]
        expected = [] if case.operation == "C" else [case.outcome]
        assert outcome == expected, (case, plain.text)


SWITCHES = ("query Many($uuid: ID!, " + ", ".join(f"$s{i}: Boolean!" for i in range(5)) + ") { video(uuid: $uuid) { "
            + " ".join(f"f{i}: uuid @include(if: $s{i})" for i in range(5)) + " } }")
DELETE = "mutation Delete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }"
INTROSPECTION = "{ __schema { queryType { name } } video: __type(name: \"Video\") { name } }"


@pytest.mark.parametrize(("body", "reason"), [
    ({"query": DELETE, "variables": {"uuid": UNKNOWN}}, "not compiled: a mutation"),
    ({"query": INTROSPECTION}, "not compiled: introspection"),
])
async def test_what_is_never_compiled_runs_the_usual_way(world: World, body: dict[str, Any], reason: str) -> None:
    headers = {"Authorization": f"Bearer {world.keys['owner']}"}
    first = await world.http.post("/graphql", json=body, headers=headers)
    second = await world.http.post("/graphql", json=body, headers=headers)
    assert _comparable(first) == _comparable(second)
    assert world.documents.counts == {reason: 1}


async def test_past_sixteen_switch_combinations_an_operation_runs_the_usual_way(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.keys['owner']}"}
    for n in range(2 ** 5):
        variables = {"uuid": world.videos["done"], **{f"s{i}": bool(n >> i & 1) for i in range(5)}}
        r = await world.http.post("/graphql", json={"query": SWITCHES, "variables": variables}, headers=headers)
        assert r.json() == {"data": {"video": {f"f{i}": world.videos["done"] for i in range(5) if n >> i & 1}}}
    # The first request is Strawberry's own; plans answer the next sixteen combinations, no more.
    assert world.documents.counts == {"compiled": 16, "fallback: too many @skip/@include combinations": 15}
