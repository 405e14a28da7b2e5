"""Abusive documents are refused before anything executes; introspection, GraphiQL and origins by setting."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query, parse
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache
from websockets.exceptions import InvalidStatus

from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments
from kensa_gql.api.graphql.limits import CACHED_DOCUMENT_CHARS, _Shape
from kensa_gql.api.graphql.schema import build_schema
from kensa_gql.settings import Settings
from tests.api.graphql.wire import REQUEST, codes, open_session, post
from tests.conftest import LiveServer, Serve

ME = "query { me { credits { available frozen } } }"
ALIASES = ("mutation Many($i: GenerateVideoInput!) { "
           + " ".join(f"a{n}: generateVideo(input: $i) {{ id }}" for n in range(2000)) + " }")
NESTED_OF_TYPE = '{ __type(name: "Video") { ' + "ofType { " * 24 + "name" + " }" * 24 + " } }"
NESTED_FIELDS = "{ __schema { types { " + "fields { type { " * 11 + "name" + " } }" * 11 + " } } }"
FRAGMENT_BOMB = ("query { ...F0 } "
                 + " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} a{n}: models {{ id }} }}"
                            for n in range(40))
                 + " fragment F40 on Query { models { id } }")


async def balance(client: httpx.AsyncClient, key: str) -> dict[str, int]:
    credits: dict[str, int] = (await post(client, ME, key=key))["data"]["me"]["credits"]
    return credits


def test_the_abusive_documents_are_what_the_issue_describes() -> None:
    assert ALIASES.count("generateVideo") == 2000
    assert NESTED_OF_TYPE.count("{") == 26 and NESTED_FIELDS.count("{") == 25


@pytest.mark.parametrize(("overrides", "status", "code", "words"), [
    ({}, 413, "PAYLOAD_TOO_LARGE", "larger than 16384 bytes"),
    ({"graphql_max_document_bytes": 1_000_000}, 413, "PAYLOAD_TOO_LARGE", "larger than 1000 tokens"),
    ({"graphql_max_document_bytes": 1_000_000, "graphql_max_tokens": 1_000_000}, 200,
     "GRAPHQL_VALIDATION_FAILED", "makes 4000 selections"),
    ({"graphql_max_document_bytes": 1_000_000, "graphql_max_tokens": 1_000_000, "graphql_max_selections": 5000},
     200, "GRAPHQL_VALIDATION_FAILED", "2000 aliases; the limit is 30"),
], ids=["size", "tokens", "selections", "aliases"])
async def test_two_thousand_aliases_are_refused_before_execution(
        serve: Serve, make_user: Any, overrides: dict[str, Any], status: int, code: str, words: str) -> None:
    # Each limit is tested alone by lifting the ones in front of it.
    server = serve(**overrides)
    user = await make_user(credits=100_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = await post(client, ALIASES, {"i": REQUEST}, key=user.key, expect_status=status)
        assert codes(body) == [code] and words in body["errors"][0]["message"]
        assert body.get("data") is None
        # Had anything executed, credits would be frozen for 2,000 videos.
        assert await balance(client, user.key) == {"available": 100_000, "frozen": 0}


async def test_a_document_too_large_over_websocket_fails_that_operation_only(live_server: LiveServer,
                                                                             make_user: Any) -> None:
    user = await make_user(credits=100_000)
    for protocol, start in (("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")):
        session = await open_session(live_server.url, protocol=protocol, key=user.key)
        assert (await session.receive())["type"] == "connection_ack"
        await session.send({"id": "big", "type": start,
                            "payload": {"query": ALIASES, "variables": {"i": REQUEST}}})
        message = await session.receive()
        assert message["type"] == "error" and message["id"] == "big"
        payload = message["payload"] if protocol == "graphql-ws" else message["payload"][0]
        assert payload["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        if protocol == "graphql-transport-ws":
            await session.subscribe("me", ME)
            assert (await session.until_done("me"))[0]["type"] == "next"
        await session.close()


async def test_an_oversized_body_is_refused_with_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": "{ models { id } }", "variables": {"x": "y" * 200_000}})
    assert r.status_code == 413 and codes(r.json()) == ["PAYLOAD_TOO_LARGE"]
    r = await client.get("/graphql", params={"query": "{ models { id } }" + " " * 20_000})
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap counts as it reads
        yield b'{"query": "{ models { id } }", "variables": {"x": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}}'

    r = await client.post("/graphql", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and codes(r.json()) == ["PAYLOAD_TOO_LARGE"]


@pytest.mark.parametrize("document", [NESTED_OF_TYPE, NESTED_FIELDS], ids=["ofType", "fields"])
async def test_introspection_nested_25_levels_is_refused_before_execution(client: httpx.AsyncClient,
                                                                          document: str) -> None:
    r = await client.post("/graphql", json={"query": document})
    assert r.status_code == 200
    body = r.json()
    assert body.get("data") is None and "GRAPHQL_VALIDATION_FAILED" in codes(body)
    assert any("nested" in e["message"] for e in body["errors"])


async def test_the_standard_introspection_query_still_works(client: httpx.AsyncClient) -> None:
    body = await post(client, get_introspection_query(descriptions=True))
    assert "errors" not in body
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Video", "VideoStatus", "GenerateVideoInput"} <= names


async def test_a_fragment_bomb_is_refused_quickly(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    body = await post(client, FRAGMENT_BOMB)
    # Spread at full size, its 82 selections make 2^42 - 2 (each fragment: twice the next, plus
    # two): refused before any rule walks them.
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert f"makes {2 ** 42 - 2} selections" in body["errors"][0]["message"]
    assert time.monotonic() - started < 5  # Strawberry's own limiter would count 2^40 aliases one by one


async def test_data_queries_have_their_own_depth_limit(serve: Serve, make_user: Any) -> None:
    server = serve(graphql_max_depth=2)
    user = await make_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = await post(client, ME, key=user.key)
        assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"] and "limit is 2" in body["errors"][0]["message"]
        assert "errors" not in await post(client, "{ me { email } }", key=user.key)


async def test_introspection_can_be_turned_off(serve: Serve) -> None:
    server = serve(introspection=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = await post(client, get_introspection_query())
        assert body.get("data") is None and codes(body)[0] == "GRAPHQL_VALIDATION_FAILED"
        assert "introspection" in body["errors"][0]["message"].lower()
        assert (await post(client, "{ __typename models { id } }"))["data"]["__typename"] == "Query"


# Each names a field, argument, type, input field or enum value one letter off a real one.
MISSPELT = [
    ("{ modles { id } }", None),
    ("{ videos(pag: 1) { total } }", None),
    ("query Q($u: IDD!) { video(uuid: $u) { id } }", None),
    ("query Q($s: VideoStatu) { models { id } }", None),
    ("mutation { generateVideo(input: {promt: \"x\", model: \"sora-2\", duration: 4, aspectRatio: \"16:9\"}) "
     "{ id } }", None),
    ("mutation M($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }",
     {"i": {"promt": "x", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}}),
    ("{ videos { videos { status(x: PENDIN) } } }", None),
]


@pytest.mark.parametrize(("introspection", "suggested"), [(True, True), (False, False)], ids=["on", "off"])
async def test_did_you_mean_suggestions_only_with_introspection_on(
        serve: Serve, make_user: Any, introspection: bool, suggested: bool) -> None:
    server = serve(introspection=introspection)
    user = await make_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        messages = []
        for document, variables in MISSPELT:
            body = await post(client, document, variables, key=user.key)
            assert body.get("errors"), body
            messages.append(" ".join(e["message"] for e in body["errors"]))
    # With introspection on, graphql-core suggests for nearly all of them; off, for none.
    hinted = ["Did you mean" in m for m in messages]
    assert (sum(hinted) >= len(MISSPELT) - 2) if suggested else not any(hinted), messages


async def test_graphiql_is_served_in_development(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200 and "graphiql" in r.text.lower()


async def test_graphiql_is_off_with_kensa_graphiql_false(settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KENSA_GRAPHIQL", "false")
    from_env = Settings(**settings.model_dump(exclude={"graphiql"}))
    assert from_env.graphiql is False
    server = LiveServer(from_env)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            r = await client.get("/graphql", headers={"Accept": "text/html"})
            assert r.status_code == 404 and "graphiql" not in r.text.lower()
            assert (await client.get("/graphql", params={"query": "{ models { id } }"})).status_code == 200
    finally:
        server.stop()


async def test_cors_origins_drive_http_cors_and_websocket_origins(serve: Serve, make_user: Any) -> None:
    allowed, other = "https://app.example", "https://evil.example"
    server = serve(cors_origins=[allowed])
    user = await make_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        preflight = await client.options("/graphql", headers={
            "Origin": allowed, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed
        r = await client.post("/graphql", json={"query": "{ models { id } }"}, headers={"Origin": allowed})
        assert r.headers["access-control-allow-origin"] == allowed
        r = await client.post("/graphql", json={"query": "{ models { id } }"}, headers={"Origin": other})
        assert "access-control-allow-origin" not in r.headers

    for origin in (allowed, server.url, None):  # listed, same origin, not a browser
        session = await open_session(server.url, key=user.key, origin=origin)
        assert (await session.receive())["type"] == "connection_ack"
        await session.close()
    with pytest.raises(InvalidStatus) as refused:
        await open_session(server.url, key=user.key, origin=other)
    assert refused.value.response.status_code == 403


async def test_a_browser_on_an_unlisted_origin_cannot_open_a_websocket(live_server: LiveServer) -> None:
    with pytest.raises(InvalidStatus):
        await open_session(live_server.url, origin="http://localhost:5173")


async def test_parse_and_validation_caches_hit_with_the_limits_on() -> None:
    schema = build_schema(Settings())
    parse_cache, validate_cache = _get_parse_cache(128), _get_validate_cache(128)
    query = "query Cached { __typename }"

    class Context:
        request_id = None

    await schema.execute(query, context_value=Context())
    parsed, validated = parse_cache.cache_info(), validate_cache.cache_info()
    for _ in range(20):
        await schema.execute(query, context_value=Context())
    assert parse_cache.cache_info().hits - parsed.hits == 20
    assert validate_cache.cache_info().hits - validated.hits == 20
    assert validate_cache.cache_info().misses == validated.misses


async def test_fragment_cycles_are_refused_readably(client: httpx.AsyncClient) -> None:
    body = await post(client, "query { ...A } fragment A on Query { models { id } ...B } "
                              "fragment B on Query { ...A }")
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"] and "within itself" in body["errors"][0]["message"]


async def test_a_document_nested_330_deep_is_a_parse_error(client: httpx.AsyncClient) -> None:
    # Within the token limit (993 tokens), beyond what graphql-core's parser nests.
    body = await post(client, "{ " + "me { " * 330 + "id" + " }" * 330 + " }")
    assert codes(body) == ["GRAPHQL_PARSE_FAILED"]


# The issue's document: 450 cheap fields, 5.5 KB, 1,802 tokens; graphql-core took 0.55 s to validate it.
REPEATED = "{" + " models{id}" * 450 + " }"
FRAGMENTS = ("{ " + " ".join(f"...F{n}" for n in range(6)) + " } "
             + " ".join(f"fragment F{n} on Query {{ models {{ id }} }}" for n in range(6)))


async def test_many_cheap_fields_are_refused_before_parsing_on_every_transport(live_server: LiveServer,
                                                                               make_user: Any) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        for request in (client.post("/graphql", json={"query": REPEATED}),
                        client.get("/graphql", params={"query": REPEATED})):
            r = await request
            assert r.status_code == 413, r.text
            assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
            assert "larger than 1000 tokens" in r.json()["errors"][0]["message"]
    user = await make_user()
    for protocol, start in (("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")):
        session = await open_session(live_server.url, protocol=protocol, key=user.key)
        assert (await session.receive())["type"] == "connection_ack"
        await session.send({"id": "many", "type": start, "payload": {"query": REPEATED}})
        message = await session.receive()
        payload = message["payload"] if protocol == "graphql-ws" else message["payload"][0]
        assert message["type"] == "error" and payload["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        await session.close()


@pytest.mark.parametrize(("document", "words"), [
    ("{" + " models{id}" * 160 + " }", "makes 320 selections"),
    ("{" + " models{id}" * 6 + " }", "selected 6 times in one selection set"),
    ("{ me { " + "email " * 6 + "} }", "selected 6 times in one selection set"),
    (FRAGMENTS, "selected 6 times in one selection set"),
], ids=["selections", "repeats", "nested-repeats", "repeats-through-fragments"])
async def test_a_document_over_its_shape_budget_is_refused_before_validation(
        client: httpx.AsyncClient, document: str, words: str) -> None:
    body = await post(client, document)
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"] and words in body["errors"][0]["message"], body
    assert body.get("data") is None


async def test_the_fullest_introspection_query_fits_every_budget(client: httpx.AsyncClient) -> None:
    # What GraphiQL sends with every option on: 229 selections, 183 tokens.
    query = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True,
                                    schema_description=True, input_value_deprecation=True)
    body = await post(client, query)
    assert "errors" not in body and body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_the_shape_counts_fragments_where_they_are_spread() -> None:
    document = parse("{ ...A ...A me { ...B } } fragment A on Query { models { id name } } "
                     "fragment B on Me { email email }")
    shape = _Shape(document)
    assert shape.selections == 3 + 3 + 1 + 2  # A twice, me, B once
    assert shape.most_repeated == 2  # models through A's two spreads; email in B


def test_only_small_documents_are_cached() -> None:
    documents = PreparedDocuments()
    small, large = "{ models { id } }", "{ models { id } }" + " " * CACHED_DOCUMENT_CHARS
    documents.remember(small, parse(small))
    documents.remember(large, parse(large))
    assert documents.get(small) is not None and documents.get(large) is None
