"""Rate limits: exact at the edge, honest Retry-After, the same on every transport, shared by replicas."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from kensa_gql.adapters.db.database import Database
from kensa_gql.api.ratelimits import LeanMemoryStorage, RateLimiter
from kensa_gql.services import accounts
from kensa_gql.settings import Settings
from tests.conftest import Serve, User

ME = "query Me { me { email } }"
GENERATE = "mutation Gen($i: GenerateVideoInput!) { generateVideo(input: $i) { uuid } }"
BODY = {"prompt": "a lighthouse at dusk", "model": "veo-3-1", "duration": 4, "aspectRatio": "16:9"}
_RATELIMIT = re.compile(r'"(\w+)";r=(\d+);t=(\d+)')


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The limiter keeps no state in the database (only the per-user budgets): one backend suffices.
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


def remaining(response: httpx.Response) -> tuple[str, int, int]:
    match = _RATELIMIT.fullmatch(response.headers["ratelimit"])
    assert match, response.headers
    return match[1], int(match[2]), int(match[3])


def assert_refused_honestly(response: httpx.Response, first_hit: float) -> None:
    """429, and Retry-After is the time left in the window that began with the first request."""
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    left = 60 - (time.time() - first_hit)
    assert left - 1 <= wait <= left + 1, (wait, left)
    assert remaining(response)[1:] == (0, wait)


async def test_rest_allows_exactly_the_budget_then_refuses_with_an_honest_retry_after(
        serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False, rate_limit_requests_per_minute=3)
    user: User = await make_user()
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        first_hit = time.time()
        answers = [await client.get("/api/v1/video/list") for _ in range(3)]
        refused = await client.get("/api/v1/video/list")
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert {r.headers["ratelimit-policy"] for r in answers} == {'"requests";q=3;w=60'}
    assert [remaining(r)[:2] for r in answers] == [("requests", 2), ("requests", 1), ("requests", 0)]
    assert_refused_honestly(refused, first_hit)
    assert refused.json() == {"success": False, "error": {
        "code": "RATE_LIMITED", "message": refused.json()["error"]["message"]}}
    assert "3 requests per minute" in refused.json()["error"]["message"]


@pytest.mark.parametrize("cors", [False, True])
async def test_every_answer_carries_its_request_id_and_under_cors_its_cors_headers_too(
        serve: Serve, make_user: Any, cors: bool) -> None:
    # Without CORS the request context itself counts the budget (one layer); with CORS the limiter
    # is a layer of its own inside CORSMiddleware. Both must answer alike.
    origin = "https://app.example"
    server = serve(run_worker=False, rate_limit_requests_per_minute=1, cors_origins=[origin] if cors else [])
    user: User = await make_user()
    async with httpx.AsyncClient(base_url=server.url, headers={**user.headers, "Origin": origin}) as client:
        allowed, refused = [await client.get("/api/v1/video/list", headers={"X-Request-Id": f"req-{i}-abcdef"})
                            for i in range(2)]
        preflight = await client.options("/graphql", headers={"Access-Control-Request-Method": "POST"})
    assert (allowed.status_code, refused.status_code) == (200, 429)
    for response, request_id in ((allowed, "req-0-abcdef"), (refused, "req-1-abcdef")):
        assert response.headers["x-request-id"] == request_id
        assert response.headers["ratelimit-policy"] == '"requests";q=1;w=60'
        assert response.headers.get_list("ratelimit") == [response.headers["ratelimit"]]  # sent once
        assert response.headers.get("access-control-allow-origin") == (origin if cors else None)
    assert preflight.status_code in (200, 204) and "ratelimit" not in preflight.headers
    assert preflight.headers.get("access-control-allow-origin") == (origin if cors else None)
    assert "x-request-id" in preflight.headers


async def test_generates_share_one_budget_over_rest_and_graphql(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False, rate_limit_generate_per_minute=2)
    user: User = await make_user(credits=1000)
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        first = await client.post("/api/v1/video/generate", json=BODY)
        second = await client.post("/graphql", json={"query": GENERATE, "variables": {"i": BODY}})
        third = await client.post("/api/v1/video/generate", json=BODY)
        fourth = await client.post("/graphql", json={"query": GENERATE, "variables": {"i": BODY}})
        listed = await client.get("/api/v1/video/list")  # other calls have their own budget
    assert first.status_code == 200 and remaining(first)[:2] == ("generate", 1), first.text
    assert first.headers["ratelimit-policy"] == '"generate";q=2;w=60'
    assert second.status_code == 200 and "errors" not in second.json(), second.text
    assert third.status_code == 429 and third.json()["error"]["code"] == "RATE_LIMITED"
    assert fourth.status_code == 200 and fourth.json()["data"] is None
    [error] = fourth.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 1 <= error["extensions"]["retryAfter"] <= 60
    assert listed.status_code == 200 and listed.json()["data"]["total"] == 2


@pytest.mark.parametrize("fastpath", [True, False], ids=["fastpath", "strawberry"])
async def test_graphql_over_http_is_refused_alike_on_both_paths(serve: Serve, make_user: Any,
                                                                fastpath: bool) -> None:
    server = serve(run_worker=False, rate_limit_requests_per_minute=2, graphql_fastpath=fastpath)
    user: User = await make_user()
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        first_hit = time.time()
        answers = [await client.post("/graphql", json={"query": ME}) for _ in range(2)]
        refused = await client.post("/graphql", json={"query": ME})
    assert [r.json() for r in answers] == [{"data": {"me": {"email": user.email}}}] * 2
    assert [remaining(r)[:2] for r in answers] == [("requests", 1), ("requests", 0)]
    assert_refused_honestly(refused, first_hit)
    wait = int(refused.headers["retry-after"])
    assert refused.json() == {"errors": [{
        "message": f"rate limit exceeded: 2 requests per minute; retry after {wait} s",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": wait}}]}


async def test_unauthenticated_calls_are_counted_per_client_address_behind_a_trusted_proxy(
        serve: Serve) -> None:
    server = serve(run_worker=False, rate_limit_anonymous_per_minute=2, trusted_proxies=["127.0.0.0/8"])
    async with httpx.AsyncClient(base_url=server.url) as client:
        def models(address: str) -> Any:
            return client.get("/api/v1/config/models", headers={"X-Forwarded-For": f"{address}, 127.0.0.1"})
        a = [(await models("203.0.113.7")).status_code for _ in range(3)]
        b = (await models("203.0.113.8")).status_code
        bad_key = await client.get("/api/v1/video/list", headers={
            "X-Forwarded-For": "203.0.113.8", "Authorization": "Bearer kg_" + "x" * 40})
    assert a == [200, 200, 429]
    assert b == 200
    # A key that does not sign in is counted as the address it came from, then refused by the route.
    assert bad_key.status_code == 401 and remaining(bad_key)[:2] == ("anonymous", 0)


async def test_a_users_own_budget_overrides_the_default(serve: Serve, make_user: Any, db: Database) -> None:
    server = serve(run_worker=False, rate_limit_requests_per_minute=3)
    limited: User = await make_user()
    other: User = await make_user()
    await accounts.set_limits(limited.email, {"requests_per_minute": 1}, db=db)
    async with httpx.AsyncClient(base_url=server.url) as client:
        mine = [(await client.get("/api/v1/video/list", headers=limited.headers)).status_code for _ in range(2)]
        theirs = [(await client.get("/api/v1/video/list", headers=other.headers)).status_code for _ in range(3)]
        await accounts.set_limits(limited.email, {"requests_per_minute": None}, db=db)  # back to 3
        again = await client.get("/api/v1/video/list", headers=limited.headers)
    assert mine == [200, 429]
    assert theirs == [200, 200, 200]
    assert again.status_code == 200 and again.headers["ratelimit-policy"] == '"requests";q=3;w=60'


async def test_two_replicas_on_one_redis_share_one_budget(serve: Serve, make_user: Any) -> None:
    replicas = [serve(run_worker=False, broadcast_url="redis://127.0.0.1:6379/0",
                      rate_limit_requests_per_minute=3) for _ in range(2)]
    user: User = await make_user()
    async with httpx.AsyncClient(headers=user.headers) as client:
        statuses = [(await client.get(f"{replicas[i % 2].url}/api/v1/video/list")).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_rate_limits_off_sends_no_headers_and_refuses_nothing(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False, rate_limits=False, rate_limit_requests_per_minute=1)
    user: User = await make_user()
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        answers = [await client.get("/api/v1/video/list") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert not any("ratelimit" in r.headers for r in answers)


@pytest.mark.parametrize("fastpath", [True, False], ids=["fastpath", "strawberry"])
async def test_a_websocket_operation_over_the_budget_gets_an_error_and_the_socket_stays_open(
        serve: Serve, make_user: Any, fastpath: bool) -> None:
    server = serve(run_worker=False, rate_limit_requests_per_minute=2, graphql_fastpath=fastpath)
    user: User = await make_user()
    url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {user.key}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        replies = []
        for op in ("1", "2", "3"):
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": ME}}))
            first = json.loads(await ws.recv())
            replies.append(first)
            if first["type"] == "next":
                assert json.loads(await ws.recv()) == {"id": op, "type": "complete"}
        await ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert [r["type"] for r in replies] == ["next", "next", "error"]
    [error] = replies[2]["payload"]
    assert error["extensions"]["code"] == "RATE_LIMITED" and 1 <= error["extensions"]["retryAfter"] <= 60
    assert pong["type"] == "pong"


async def test_a_legacy_graphql_ws_operation_over_the_budget_gets_an_error_too(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False, rate_limit_requests_per_minute=1)
    user: User = await make_user()
    url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {user.key}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        # legacy graphql-ws runs subscriptions only: the query is refused, yet counted
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": {"query": ME}}))
        first = json.loads(await ws.recv())
        assert first["payload"]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", first
        await ws.send(json.dumps({"id": "2", "type": "start", "payload": {"query": ME}}))
        refused = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": "3", "type": "stop"}))  # the socket still reads
    assert refused["type"] == "error" and refused["id"] == "2"
    assert refused["payload"]["extensions"]["code"] == "RATE_LIMITED"


async def test_a_window_starts_again_once_it_has_ended() -> None:
    storage = LeanMemoryStorage()
    assert storage.count("k", 60)[0] == 1 and storage.count("k", 60)[0] == 2
    assert storage.count("gone", 0)[0] == 1
    assert storage.count("gone", 0)[0] == 1  # its window (0 s) had ended: a fresh one
    assert await storage.get("k") == 2 and await storage.get("gone") == 0


async def test_with_its_redis_away_the_limiter_lets_requests_through() -> None:
    limiter = RateLimiter(Settings(broadcast_url="redis://127.0.0.1:1/0"))
    decision = await limiter.hit("requests", "1", 3)
    assert decision.allowed and decision.remaining == 3
