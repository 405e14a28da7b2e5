"""``Prefer: wait=N`` on REST generate and task: held until final or N seconds, and nothing left behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

from kensa_gql.api.rest.waiting import preferred_wait
from tests.conftest import LiveServer, Serve

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
CREATED_KEYS = {"uuid", "status", "model", "creditsUsed", "createdAt"}


@pytest.mark.parametrize(("header", "seconds"), [
    ("wait=5", 5), ("WAIT = 7", 7), ("respond-async, wait=10", 10), ('wait="3"', 3), ("wait=600", 60),
    ("wait=0", 0), ("wait=-1", None), ("wait=soon", None), ("wait", None), ("handling=lenient", None),
])
def test_the_wait_preference_is_read_clamped_or_ignored(database_url: str, header: str,
                                                        seconds: int | None) -> None:
    assert preferred_wait(Headers({"prefer": header})) == seconds


async def test_generate_and_task_return_as_soon_as_the_video_is_final(serve: Serve, make_user: Any) -> None:
    server = serve(local_generation_seconds=0.3)
    user = await make_user(credits=10)
    async with httpx.AsyncClient(base_url=server.url, timeout=70, headers=user.headers) as client:
        started = time.monotonic()
        r = await client.post("/api/v1/video/generate", json=GENERATE, headers={"Prefer": "wait=60"})
        # held until COMPLETED, far sooner than the 60 s asked for, with the usual keys
        assert r.status_code == 200 and r.headers["preference-applied"] == "wait=60"
        data = r.json()["data"]
        assert set(data) == CREATED_KEYS and data["status"] == "COMPLETED"
        assert time.monotonic() - started < 30
        r = await client.get("/api/v1/video/task", params={"uuid": data["uuid"]}, headers={"Prefer": "wait=60"})
        assert r.json() == {"success": True, "data": {"uuid": data["uuid"], "status": "COMPLETED", "progress": 100}}
        assert r.headers["preference-applied"] == "wait=60"
        # without the header nothing changes: the answer is at once, as before
        r = await client.post("/api/v1/video/generate", json=GENERATE)
        assert r.json()["data"]["status"] == "PENDING" and "preference-applied" not in r.headers


async def test_a_video_still_running_is_answered_as_it_is_after_the_wait(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False)
    user = await make_user(credits=10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=user.headers) as client:
        r = await client.post("/api/v1/video/generate", json=GENERATE, headers={"Prefer": "wait=1"})
        assert r.headers["preference-applied"] == "wait=1" and r.json()["data"]["status"] == "PENDING"
        uuid = r.json()["data"]["uuid"]
        r = await client.get("/api/v1/video/task", params={"uuid": uuid}, headers={"Prefer": "wait=1"})
        assert r.json()["data"] == {"uuid": uuid, "status": "PENDING", "progress": 0}
        # an unknown video is the usual 404, at once
        r = await client.get("/api/v1/video/task", params={"uuid": "00000000-0000-4000-8000-000000000000"},
                             headers={"Prefer": "wait=60"})
        assert r.status_code == 404


def held_requests(server: LiveServer) -> list[asyncio.Task[Any]]:
    """The server loop's tasks still serving a request or waiting for a disconnect."""
    loop = server.server.servers[0].get_loop()
    return [t for t in asyncio.all_tasks(loop)
            if any(name in repr(t.get_coro()) for name in ("run_asgi", "_disconnect", "until_finished"))]


async def test_a_client_that_goes_away_frees_everything_its_wait_held(serve: Serve, make_user: Any) -> None:
    server = serve(run_worker=False)
    user = await make_user(credits=10)
    async with httpx.AsyncClient(base_url=server.url, headers=user.headers) as client:
        uuid = (await client.post("/api/v1/video/generate", json=GENERATE)).json()["data"]["uuid"]
    deps = server.app.state.deps
    pool = deps.db.engine.pool
    # given a client holding a task request for up to 60 s
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write((f"GET /api/v1/video/task?uuid={uuid} HTTP/1.1\r\nHost: gw\r\nPrefer: wait=60\r\n"
                  f"Authorization: Bearer {user.key}\r\n\r\n").encode())
    await writer.drain()
    await until(lambda: uuid in deps.watchers)
    # while it waits, it holds a watch, and no database connection
    assert pool.checkedout() == 0
    assert held_requests(server)
    # when the client disconnects
    writer.close()
    await writer.wait_closed()
    # then its watch, its request and its disconnect listener are gone, and no connection is out
    await until(lambda: uuid not in deps.watchers and not held_requests(server))
    assert pool.checkedout() == 0
    assert await reader.read() == b""  # nothing was answered


async def until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)
