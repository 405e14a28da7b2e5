"""GraphQL: a string no database can keep (a lone surrogate, NUL) is BAD_USER_INPUT naming the field,
over POST, GET and both WebSocket protocols; nothing is written and nothing echoes it unencodable."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.graphql.wire import GENERATE, REQUEST, VIDEO_STATUS, codes, open_session, post
from tests.conftest import LiveServer

ME = "query { me { credits { available frozen } } videos { total } }"
VIDEO = "query One($id: ID!) { video(uuid: $id) { id } }"
BAD = ("a \ud800 b", "k\udc00", "a \x00 b")
CASES: list[tuple[dict[str, Any], str]] = [
    *[({field: bad}, field) for field in ("prompt", "model", "aspectRatio", "quality", "idempotencyKey")
      for bad in BAD],
    *[({"startImageUrl": f"https://images.example.com/{bad}.png"}, "startImageUrl") for bad in BAD],
]


async def post_escaped(client: httpx.AsyncClient, query: str, variables: dict[str, Any], *,
                       key: str) -> dict[str, Any]:
    """POST as a JSON client writes a lone surrogate: its \\ud800 escape (httpx's json= cannot)."""
    r = await client.post("/graphql", content=json.dumps({"query": query, "variables": variables}),
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def message_codes(message: dict[str, Any]) -> list[str]:
    """The error codes of a WebSocket answer: an ``error`` (a list or one error) or a result with errors."""
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else payload.get("errors", [payload])
    return [e.get("extensions", {}).get("code") for e in errors]


def refused(errors: list[dict[str, Any]], field: str) -> bool:
    return ([e.get("extensions", {}).get("code") for e in errors] == ["BAD_USER_INPUT"]
            and errors[0]["message"].startswith(f"{field}: "))


async def test_unstorable_text_is_refused_over_http_and_nothing_is_written(live_server: LiveServer,
                                                                           make_user: Any) -> None:
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        for change, field in CASES:
            body = await post_escaped(client, GENERATE, {"input": {**REQUEST, **change}}, key=user.key)
            assert body["data"] is None and refused(body["errors"], field), (change, body)

        # ids and operation names are inputs too: never a 500, never an answer that cannot be encoded
        for bad in BAD:
            body = await post_escaped(client, VIDEO, {"id": bad}, key=user.key)
            assert body == {"data": {"video": None}}
            r = await client.get("/graphql", params={"query": VIDEO, "variables": json.dumps({"id": bad})},
                                 headers={"Authorization": f"Bearer {user.key}"})
            assert r.status_code == 200 and r.json() == {"data": {"video": None}}
            r = await client.post("/graphql", content=json.dumps({"query": ME, "operationName": bad}),
                                  headers={"Content-Type": "application/json"})
            assert r.status_code < 500, r.text

        body = await post(client, ME, key=user.key)
        assert body["data"] == {"me": {"credits": {"available": 100, "frozen": 0}}, "videos": {"total": 0}}


async def test_unstorable_text_is_refused_over_both_websocket_protocols(live_server: LiveServer,
                                                                        make_user: Any) -> None:
    user = await make_user(credits=100)
    for protocol, start in (("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")):
        session = await open_session(live_server.url, protocol=protocol, key=user.key)
        assert (await session.receive())["type"] == "connection_ack"
        # mutations run over graphql-transport-ws only (legacy graphql-ws refuses them)
        for n, (change, field) in enumerate(CASES if protocol == "graphql-transport-ws" else []):
            op_id = f"g{n}"
            await session.send({"id": op_id, "type": start,
                                "payload": {"query": GENERATE, "variables": {"input": {**REQUEST, **change}}}})
            first = (await session.until_done(op_id))[0]
            assert first["type"] == "next" and refused(first["payload"]["errors"], field), (change, first)
        # a uuid that is not text is an unknown video, as any malformed uuid (legacy: subscriptions only)
        for n, bad in enumerate(BAD):
            op_id = f"v{n}"
            await session.send({"id": op_id, "type": start,
                                "payload": {"query": VIDEO_STATUS, "variables": {"uuid": bad}}})
            first = (await session.until_done(op_id))[0]
            assert message_codes(first) == ["NOT_FOUND"], first
        # an operation id that is not text still gets an answer on an open socket
        await session.send({"id": "x\ud800", "type": start, "payload": {"query": VIDEO_STATUS,
                                                                       "variables": {"uuid": "none"}}})
        answer = await session.receive()
        assert answer["id"] == "x\ud800" and message_codes(answer) == ["NOT_FOUND"], answer
        await session.close()
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        body = await post(client, ME, key=user.key)
    assert body["data"] == {"me": {"credits": {"available": 100, "frozen": 0}}, "videos": {"total": 0}}
    assert codes(body) == []
