"""JSON nested past the limit is a client error on every GraphQL transport: 400 or close 4400, never a 500."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.api.graphql.wire import codes, open_session
from tests.conftest import LiveServer

QUERY = "{ models { id } }"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# 200 levels parse but are refused by the depth check; 5,000 levels make json.loads recurse too deep.
@pytest.mark.parametrize("depth", [200, 5000])
async def test_deeply_nested_json_is_refused_on_every_transport(
        live_server: LiveServer, make_user: Any, caplog: pytest.LogCaptureFixture, depth: int) -> None:
    user = await make_user()
    deep = nested(depth)
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
            # The query once as it should be: the fast path remembers it, and answers it next time.
            assert (await client.post("/graphql", json={"query": QUERY})).status_code == 200
            # POST: in the variables, under a key GraphQL ignores, and as the whole body
            for body in (f'{{"query": "{QUERY}", "variables": {{"x": {deep}}}}}',
                         f'{{"query": "{QUERY}", "junk": {deep}}}', deep):
                r = await client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
                assert r.status_code == 400 and codes(r.json()) == ["BAD_USER_INPUT"], r.text
                assert "nested more than 64 levels" in r.json()["errors"][0]["message"]
            # GET: the variables parameter
            r = await client.get("/graphql", params={"query": QUERY, "variables": f'{{"x": {deep}}}'})
            assert r.status_code == 400 and codes(r.json()) == ["BAD_USER_INPUT"], r.text
            # and the server still answers
            assert (await client.post("/graphql", json={"query": QUERY})).status_code == 200

        # WebSocket, both protocols, before and after the connection is acknowledged
        for protocol, start in (("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")):
            for acknowledged in (False, True):
                session = await open_session(live_server.url, protocol=protocol,
                                             key=user.key if acknowledged else None)
                if acknowledged:
                    assert (await session.receive())["type"] == "connection_ack"
                await session.ws.send(f'{{"id": "1", "type": "{start}", "payload": {{"query": "{QUERY}", '
                                      f'"variables": {{"x": {deep}}}}}}}')
                assert (await session.closed_with())[0] == 4400, (protocol, acknowledged)
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
