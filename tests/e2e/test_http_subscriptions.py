"""``videoStatus`` over HTTP with the multipart subscription protocol Apollo Client uses: a POST
accepting ``multipart/mixed;subscriptionSpec="1.0"``, read as a stream of parts to COMPLETED,
with the GraphQL fast path on and off."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import Serve

SUBSCRIBE = "subscription($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"
ACCEPT = 'multipart/mixed;subscriptionSpec="1.0", application/json'
GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


def parts(raw: str, boundary: str) -> list[Any]:
    """The JSON bodies of a multipart/mixed response, as an Apollo client splits it."""
    bodies = []
    for chunk in raw.split(f"--{boundary}"):
        _head, sep, body = chunk.partition("\r\n\r\n")
        if sep and body.strip():
            bodies.append(json.loads(body))
    return bodies


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fastpath", [True, False], ids=["fastpath", "stock"])
async def test_a_multipart_subscription_follows_a_video_to_completed(serve: Serve, make_user: Any,
                                                                     fastpath: bool) -> None:
    server = serve(graphql_fastpath=fastpath)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post("/api/v1/video/generate", headers=user.headers, json=GENERATE)
        uuid = r.json()["data"]["uuid"]
        async with client.stream("POST", "/graphql", headers={**user.headers, "accept": ACCEPT},
                                 json={"query": SUBSCRIBE, "variables": {"uuid": uuid}}) as response:
            assert response.status_code == 200, (await response.aread()).decode()
            content_type = response.headers["content-type"]
            assert content_type.startswith("multipart/mixed")
            boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
            raw = "".join([text async for text in response.aiter_text()])
    payloads = [p["payload"]["data"]["videoStatus"] for p in parts(raw, boundary) if "payload" in p]
    assert payloads[0]["uuid"] == uuid
    assert payloads[-1] == {"uuid": uuid, "status": "COMPLETED", "progress": 100}
    assert [p["progress"] for p in payloads] == sorted(p["progress"] for p in payloads)
    assert raw.rstrip().endswith(f"--{boundary}--")  # the server ends the stream after COMPLETED
