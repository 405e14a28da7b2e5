"""``GET /api/v1/video/{uuid}/events``: server-sent events followed by real clients (httpx-sse and
raw streaming lines) to COMPLETED, resumed with Last-Event-ID, with keep-alives, owner only."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.conftest import Serve

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_client_follows_a_video_to_completed_and_resumes_with_last_event_id(serve: Serve,
                                                                                     make_user: Any) -> None:
    server = serve(sse_keepalive_seconds=0.1)
    user, stranger = await make_user(credits=100), await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post("/api/v1/video/generate", headers=user.headers, json=GENERATE)
        uuid = r.json()["data"]["uuid"]
        path = f"/api/v1/video/{uuid}/events"

        async def follow() -> list[Any]:
            async with aconnect_sse(client, "GET", path, headers=user.headers) as source:
                assert source.response.headers["content-type"].startswith("text/event-stream")
                return [sse async for sse in source.aiter_sse()]

        async def raw_lines() -> list[str]:
            async with client.stream("GET", path, headers=user.headers) as response:
                return [line async for line in response.aiter_lines()]

        # when two clients follow it, one parsing events and one reading the raw stream
        events, lines = await asyncio.gather(follow(), raw_lines())
        # then each event is the REST task JSON with a growing id, and the stream ends after COMPLETED
        assert all(e.event == "status" for e in events)
        states = [e.json() for e in events]
        assert states[0]["uuid"] == uuid and states[-1] == {"uuid": uuid, "status": "COMPLETED", "progress": 100}
        ids = [int(e.id) for e in events]
        assert ids == sorted(set(ids)) and len(ids) >= 2
        assert ": keep-alive" in lines

        # and a client resuming after an early event gets only what is newer: the final state
        async with aconnect_sse(client, "GET", path, headers={**user.headers, "Last-Event-ID": str(ids[0])}) as src:
            resumed = [sse async for sse in src.aiter_sse()]
        assert [(e.id, e.json()["status"]) for e in resumed] == [(str(ids[-1]), "COMPLETED")]
        async with aconnect_sse(client, "GET", path, headers={**user.headers, "Last-Event-ID": str(ids[-1])}) as src:
            assert [sse async for sse in src.aiter_sse()] == []

        # and nobody else can watch it
        refused = await client.get(path, headers=stranger.headers)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "NOT_FOUND"
        assert (await client.get(path)).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_webhook_urls_pointing_inward_are_refused_by_both_apis(serve: Serve, make_user: Any) -> None:
    server = serve()  # the production rules: https only, public addresses only
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for url in ("https://127.0.0.1/hook", "https://169.254.169.254/", "http://example.com/hook",
                    "https://localhost/hook"):
            r = await client.post("/api/v1/video/generate", headers=user.headers,
                                  json={**GENERATE, "webhookUrl": url})
            assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_USER_INPUT", url
            assert r.json()["error"]["message"].startswith("webhookUrl:")
            r = await client.post("/api/v1/webhooks", headers=user.headers, json={"url": url})
            assert r.status_code == 400 and r.json()["error"]["message"].startswith("url:"), url
            r = await client.post("/graphql", headers=user.headers, json={
                "query": "mutation($u: String!) { createWebhookEndpoint(url: $u) { secret } }",
                "variables": {"u": url}})
            assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", url
        # and nothing was charged for the refused videos
        history = (await client.get("/api/v1/credit/history", headers=user.headers)).json()["data"]
        assert [t["transType"] for t in history["transactions"]] == ["GIFT"]
