"""/metrics: a scripted session moves each counter by exactly what it did."""

from __future__ import annotations

import asyncio
import uuid as uuids
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import Serve, User
from tests.webhook_receiver import Receiver

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


CREATE_ENDPOINT = """
mutation($url: String!, $events: [WebhookEvent!]) {
  createWebhookEndpoint(url: $url, events: $events) { endpoint { id } }
}"""
GENERATE_VIDEO = "mutation($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid } }"
WEBHOOKS = {"webhooks_allow_http": True, "webhooks_allow_private": True, "webhook_first_retry_seconds": 0.2}


async def until(probe: Any, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


async def test_sse_streams_and_webhook_deliveries_are_counted(serve: Serve, make_user: Any) -> None:
    # given an endpoint for video.completed whose receiver fails once, and a video whose own receiver is gone
    endpoint_receiver, own_receiver = Receiver(answers=[500]), Receiver(answers=[410])
    endpoint_url, own_url = await endpoint_receiver.start(), await own_receiver.start()
    server = serve(metrics_token=SecretStr(TOKEN), local_generation_seconds=0.3, **WEBHOOKS)
    user: User = await make_user(credits=1000)
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers, timeout=30) as client:
        created = await client.post("/graphql", json={"query": CREATE_ENDPOINT, "variables": {
            "url": endpoint_url + "/hooks", "events": ["VIDEO_COMPLETED"]}})
        assert created.json()["data"]["createWebhookEndpoint"]["endpoint"]["id"], created.text
        before = await scrape(client)
        made = await client.post("/graphql", json={"query": GENERATE_VIDEO, "variables": {"input": {
            "prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9",
            "webhookUrl": own_url + "/mine", "webhookEvents": ["VIDEO_COMPLETED"]}}})
        uuid = made.json()["data"]["generateVideo"]["uuid"]
        # when a client follows the video over SSE to the end
        statuses = []
        async with client.stream("GET", f"/api/v1/video/{uuid}/events") as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    statuses.append(orjson.loads(line[5:])["status"])
                    break
            during = await scrape(client)  # the stream is open: it sent its first event
            async for line in lines:
                if line.startswith("data:"):
                    statuses.append(orjson.loads(line[5:])["status"])
        assert statuses[-1] == "COMPLETED", statuses
        # and the deliveries are made: the endpoint's after one retry, the video's own refused with 410 Gone
        await endpoint_receiver.wait_for(2)
        await own_receiver.wait_for(1)

        async def settled() -> Scrape | None:
            now = await scrape(client)
            done = now.value("kensa_webhook_deliveries_total") - before.value("kensa_webhook_deliveries_total")
            gone = now.value("kensa_sse_streams_open") == before.value("kensa_sse_streams_open")
            return now if done >= 3 and gone else None
        after = await until(settled)
    await endpoint_receiver.stop()
    await own_receiver.stop()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # then the stream counted while open, and not after it ended
    assert during.value("kensa_sse_streams_open") == before.value("kensa_sse_streams_open") + 1
    assert delta("kensa_sse_streams_open") == 0
    # and each attempt counted once by its outcome, each send timed
    assert delta("kensa_webhook_deliveries_total", outcome="retrying") == 1
    assert delta("kensa_webhook_deliveries_total", outcome="succeeded") == 1
    assert delta("kensa_webhook_deliveries_total", outcome="failed") == 1  # 410 Gone: given up at once
    assert delta("kensa_webhook_deliveries_total", outcome="refused") == 0
    assert delta("kensa_webhook_deliveries_total") == 3
    assert delta("kensa_webhook_delivery_duration_seconds_count") == 3
