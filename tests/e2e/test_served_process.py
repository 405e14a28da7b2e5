"""`kensa-gql serve` as operators run it: uvicorn's own settings, not the test fixture's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import websockets

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
