"""`kensa-gql serve` as operators run it: uvicorn's own settings, not the test fixture's."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.server import SHUTDOWN_GRACE_SECONDS
from kensa_gql.services import accounts
from tests.conftest import free_port
from tests.e2e.test_crash_recovery import start_gateway, wait_ready


async def test_oversized_websocket_frames_are_refused_before_decoding(tmp_path: Path) -> None:
    port = free_port()
    proc = start_gateway(tmp_path, port, "serve.log")
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        async with websockets.connect(f"ws://127.0.0.1:{port}/graphql",
                                      subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"pad": "x" * 200_000}}))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_an_open_event_stream_does_not_hold_up_a_stop(tmp_path: Path) -> None:
    # given a served gateway, and a client following a video that takes minutes over SSE
    port = free_port()
    proc = start_gateway(tmp_path, port, "serve.log", KENSA_LOCAL_GENERATION_SECONDS="300")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path}/kensa.db"))
        try:
            _, issued = await accounts.create_user("sse@example.test", credits=10, db=db)
        finally:
            await db.dispose()
        headers = {"Authorization": f"Bearer {issued.key}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            made = await client.post("/api/v1/video/generate", headers=headers, json={
                "prompt": "a lighthouse", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"})
            uuid = made.json()["data"]["uuid"]
            async with client.stream("GET", f"/api/v1/video/{uuid}/events", headers=headers) as stream:
                lines = stream.aiter_lines()
                while not (await anext(lines)).startswith("data:"):
                    pass
                # when the gateway is told to stop while the stream is open
                asked = time.monotonic()
                proc.terminate()
                # then it stops after its grace period, not when the video would have finished
                await asyncio.to_thread(proc.wait, timeout=SHUTDOWN_GRACE_SECONDS + 15)
        assert time.monotonic() - asked < SHUTDOWN_GRACE_SECONDS + 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
