"""/metrics: a scripted session moves each counter by exactly what it did."""

from __future__ import annotations

import asyncio
import uuid as uuids
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import Serve, User

TOKEN = "metrics-secret-for-tests"
ME = "query Me { me { email } }"
BODY = {"prompt": "a lighthouse at dusk", "model": "veo-3-1", "duration": 4, "aspectRatio": "16:9"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v
                                                                         for k, v in labels.items())]
        return sum(found)


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def test_a_scripted_session_moves_every_counter_by_exactly_what_it_did(serve: Serve, make_user: Any) -> None:
    server = serve(metrics_token=SecretStr(TOKEN), local_generation_seconds=0.1)
    user: User = await make_user(credits=1000)
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers, timeout=30) as client:
        # given a scrape before the session (the instruments are per process: deltas, not totals)
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        before = await scrape(client)
        # when a user generates a video, waits for it, reads it twice, misses once, asks GraphQL
        generated = await client.post("/api/v1/video/generate", json=BODY)
        assert generated.status_code == 200, generated.text
        uuid = generated.json()["data"]["uuid"]
        for _ in range(200):
            task = (await client.get("/api/v1/video/task", params={"uuid": uuid})).json()["data"]
            if task["status"] in ("COMPLETED", "FAILED"):
                break
            await asyncio.sleep(0.05)
        assert task["status"] == "COMPLETED", task
        polls = _ + 1
        for _ in range(2):
            assert (await client.get(f"/api/v1/video/{uuid}")).status_code == 200
        assert (await client.get(f"/api/v1/video/{uuids.uuid4()}")).status_code == 404
        for _ in range(2):  # the second is the fast path's compiled answer: counted alike
            assert (await client.post("/graphql", json={"query": ME})).json()["data"]["me"]["email"] == user.email
        invalid = await client.post("/graphql", json={"query": "{ nope }"})
        assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        after = await scrape(client)
        detail = await client.get(f"/api/v1/video/{uuid}")
    price = detail.json()["data"]["creditsUsed"]
    assert price > 0

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # then each counter moved by exactly the session's share
    requests = "kensa_http_requests_total"
    assert delta(requests, route="/api/v1/video/{uuid}", method="GET", status="200") == 2
    assert delta(requests, route="/api/v1/video/{uuid}", method="GET", status="404") == 1
    assert delta(requests, route="/api/v1/video/generate", method="POST", status="200") == 1
    assert delta(requests, route="/api/v1/video/task", method="GET", status="200") == polls
    assert delta(requests, route="/graphql", method="POST", status="200") == 3
    assert delta(requests, route="/metrics", method="GET", status="401") == 0  # both were before
    assert delta("kensa_http_request_duration_seconds_count", route="/api/v1/video/{uuid}", method="GET") == 3
    assert delta("kensa_graphql_operations_total", operation="Me", type="query") == 2
    assert delta("kensa_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    assert delta("kensa_task_transitions_total", status="COMPLETED") == 1
    assert delta("kensa_task_transitions_total", status="FAILED") == 0
    assert delta("kensa_provider_calls_total", provider="local", call="submit", outcome="ok") == 1
    assert delta("kensa_provider_calls_total", provider="local", outcome="error") == 0
    assert delta("kensa_provider_call_duration_seconds_count", provider="local", call="submit") == 1
    assert delta("kensa_task_claim_lag_seconds_count") >= 1
    assert delta("kensa_credits_settled_total") == price
    assert delta("kensa_credits_released_total") == 0
    assert after.value("kensa_credits_frozen") == 0
    # every label value is a template: no uuid ever becomes a label
    assert not any(uuid in str(s.labels) for s in after.samples)


async def test_frozen_credits_and_open_sockets_are_gauges_of_now(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False)  # nothing settles: the hold stays frozen
    user: User = await make_user(credits=1000)
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers, timeout=30) as client:
        before = Scrape((await client.get("/metrics")).text)
        generated = await client.post("/api/v1/video/generate", json=BODY)
        price = generated.json()["data"]["creditsUsed"]
        url = server.url.replace("http", "ws") + "/graphql"
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]):
            during = Scrape((await client.get("/metrics")).text)
    assert during.value("kensa_credits_frozen") == before.value("kensa_credits_frozen") + price
    assert during.value("kensa_websockets_open") == before.value("kensa_websockets_open") + 1
