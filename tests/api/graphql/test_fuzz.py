"""Fuzzing /graphql: documents generated from the schema (hypothesis-graphql) over HTTP, and random
and malformed frames on both WebSocket protocols. Whatever arrives, the server answers as a
client error or a protocol message, never a 5xx, never INTERNAL_SERVER_ERROR, never an ERROR in
its log; and the ledger still adds up. Bounded: fixed example counts, a fixed seed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode
from hypothesis_graphql import strategies as gql_st

from tests.api.graphql.asgi_sockets import FOLLOW, LEGACY_WS, ME, TRANSPORT_WS, Client, Gateway
from tests.audit import audit_ledger
from tests.conftest import LiveServer

SDL = (Path(__file__).resolve().parents[3] / "schema.graphql").read_text()
HTTP_EXAMPLES = 120
WS_EXAMPLES = 60
INTS = st.integers(min_value=-3, max_value=40) | st.integers()
STRINGS = st.text(max_size=40) | st.sampled_from(["sora-2", "16:9", "720p", "\x00", "\ud800", ""])
# A document, some JSON for its variables (right or wrong), and whose key it carries.
JUNK = st.recursive(st.none() | st.booleans() | INTS | STRINGS,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
ONE_FIELD = [["models"], ["me"], ["videos"], ["creditHistory"], ["webhookEndpoints"]]
FUZZ_SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite: the transports are under test here (the ledger's own properties run on both databases)."""
    yield f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


def errors_of_ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@st.composite
def documents(draw: Any) -> tuple[str, Any, bool]:
    mode = draw(st.sampled_from([Mode.POSITIVE, Mode.POSITIVE, Mode.NEGATIVE]))
    # Whole random documents, and queries of one root field: with many root fields at once, one of
    # them almost always fails, and a failed non-null root field nulls all of `data`.
    kind = draw(st.sampled_from([gql_st.queries, gql_st.mutations, gql_st.queries]))
    fields = draw(st.none() | st.sampled_from(ONE_FIELD)) if kind is gql_st.queries else None
    # (Some of those fields take no argument: nothing to violate, so they are generated valid.)
    document = draw(kind(SDL, mode=mode if fields is None else Mode.POSITIVE, fields=fields))
    variables = draw(st.none() | JUNK)
    return document, variables, draw(st.booleans())


async def test_generated_documents_never_meet_an_internal_error(
        live_server: LiveServer, make_user: Any, db: Any, caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user(credits=100_000)
    seen: Counter[str] = Counter()

    def run() -> None:
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            @settings(FUZZ_SETTINGS, max_examples=HTTP_EXAMPLES)
            @given(case=documents())
            def check(case: tuple[str, Any, bool]) -> None:
                query, variables, signed = case
                note(f"{query}\nvariables: {variables!r}\nkey: {signed}")
                headers = {"Authorization": f"Bearer {user.key}"} if signed else {}
                # json.dumps escapes what UTF-8 cannot carry (a lone surrogate) as JSON allows.
                r = http.post("/graphql", content=json.dumps({"query": query, "variables": variables}),
                              headers={**headers, "Content-Type": "application/json"})
                assert r.status_code < 500, r.text
                codes = [e.get("extensions", {}).get("code") for e in r.json().get("errors", [])]
                assert "INTERNAL_SERVER_ERROR" not in codes, r.text
                seen["data" if r.json().get("data") else "errors"] += 1

            check()

    await asyncio.to_thread(run)
    assert seen["data"] > 0 and seen["errors"] > 0, seen  # both kinds of answer were reached
    assert not errors_of_ours(caplog), errors_of_ours(caplog)
    audit = await audit_ledger(db, user.user_id)
    assert audit.available + audit.frozen + audit.used == 100_000, audit


# --- WebSocket: random frames, in random order, on both protocols ---------------------------------------

def _frames(protocol: str, uuid: str) -> st.SearchStrategy[Any]:
    start = "subscribe" if protocol == TRANSPORT_WS else "start"
    ops = st.sampled_from(["1", "2", "x"]) | JUNK
    payloads = st.sampled_from([{"query": FOLLOW, "variables": {"uuid": uuid}}, {"query": ME},
                                {"query": "{ nope }"}, {"query": "subscription { videoStatus { uuid } }"}]) | JUNK
    kinds = st.sampled_from(["connection_init", "ping", "pong", start, "complete", "stop", "connection_terminate"])
    messages = st.fixed_dictionaries({"type": kinds}, optional={"id": ops, "payload": payloads}) | JUNK
    return messages | st.text(max_size=20) | st.binary(max_size=8)


# Every close code either protocol documents (graphql-transport-ws's 44xx, WebSocket's own).
DOCUMENTED_CLOSES = {1000, 1002, 1011, 1013, 4400, 4401, 4403, 4408, 4409, 4429}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_random_frames_get_protocol_answers(gateway: Gateway, protocol: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()

    # Hypothesis drives from a thread; each exchange runs on this loop, where the app lives.
    @settings(FUZZ_SETTINGS, max_examples=WS_EXAMPLES)
    @given(frames=st.lists(_frames(protocol, gateway.uuid), min_size=1, max_size=8), init_first=st.booleans())
    def check(frames: list[Any], init_first: bool) -> None:
        logged = len(caplog.records)
        out = asyncio.run_coroutine_threadsafe(exchange(gateway, protocol, frames, init_first), loop).result(60)
        note(f"frames: {frames!r}\nout: {out!r}")
        answered_by_protocol(out)
        assert not [r.getMessage() for r in caplog.records[logged:] if r.levelno >= logging.ERROR], caplog.text

    await asyncio.to_thread(check)
    assert not errors_of_ours(caplog), errors_of_ours(caplog)


async def exchange(gateway: Gateway, protocol: str, frames: list[Any], init_first: bool) -> list[dict[str, Any]]:
    """What the app sent back (after the accept) when one socket was sent ``frames``."""
    client = Client(gateway.app, protocol)
    if init_first:
        client.say({"type": "connection_init", "payload": {"Authorization": f"Bearer {gateway.key}"}})
    for frame in frames:
        if isinstance(frame, bytes):
            client.inbox.put_nowait({"type": "websocket.receive", "bytes": frame})
        else:
            client.say(frame if isinstance(frame, str) else json.dumps(frame))
    await asyncio.sleep(0.05)
    await client.disconnect()
    return client.out[1:]


def answered_by_protocol(out: list[dict[str, Any]]) -> None:
    """Every message sent is a protocol message, no error is ours, every close code is documented."""
    for message in out:
        if message["type"] == "websocket.send":
            answer = json.loads(message["text"])
            assert isinstance(answer, dict) and isinstance(answer.get("type"), str), answer
            for error in _errors(answer):
                assert error.get("extensions", {}).get("code") != "INTERNAL_SERVER_ERROR", answer
        else:
            assert message["type"] == "websocket.close", message
            assert message.get("code", 1000) in DOCUMENTED_CLOSES, message


def _errors(answer: dict[str, Any]) -> list[dict[str, Any]]:
    payload = answer.get("payload")
    if answer["type"] == "error":
        return payload if isinstance(payload, list) else [payload] if isinstance(payload, dict) else []
    if isinstance(payload, dict) and isinstance(payload.get("errors"), list):
        return [e for e in payload["errors"] if isinstance(e, dict)]
    return []
