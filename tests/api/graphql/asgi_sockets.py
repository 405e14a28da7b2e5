"""WebSockets spoken to the app itself through ASGI, in memory: for protocol edges and fuzzing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

FOLLOW = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"
ME = "query { me { email } }"
REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
TRANSPORT_WS, LEGACY_WS = "graphql-transport-ws", "graphql-ws"


class Client:
    """One WebSocket to the ASGI app, in memory: what it is sent, and what the app answers."""

    def __init__(self, app: Any, protocol: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.out: list[dict[str, Any]] = []
        self.read = 1  # out[0] is the accept; messages are read in order
        self.arrived = asyncio.Event()
        scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "http_version": "1.1",
                 "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"testserver")], "subprotocols": [protocol],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "state": {}}
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self.inbox.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.out.append(message)
        self.arrived.set()

    def say(self, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def _until(self, index: int) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while len(self.out) <= index:
                self.arrived.clear()
                await self.arrived.wait()
        return self.out[index]

    async def receive(self) -> dict[str, Any]:
        """The next JSON message the app sent."""
        message = await self._until(self.read)
        self.read += 1
        assert message["type"] == "websocket.send", message
        parsed: dict[str, Any] = json.loads(message["text"])
        return parsed

    async def closed(self) -> tuple[int, str]:
        """The close the app sent, once it has."""
        async with asyncio.timeout(10):
            while not any(m["type"] == "websocket.close" for m in self.out):
                self.arrived.clear()
                await self.arrived.wait()
        close = next(m for m in self.out if m["type"] == "websocket.close")
        return close["code"], close.get("reason", "")

    async def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
        async with asyncio.timeout(10):
            await self.task


class Gateway:
    def __init__(self, app: Any, key: str, uuid: str) -> None:
        self.app, self.key, self.uuid = app, key, uuid
        self.view = next(r.app for r in app.routes if getattr(r, "path", "") == "/graphql")

    async def connect(self, protocol: str = TRANSPORT_WS, *, init: bool = True) -> Client:
        client = Client(self.app, protocol)
        if init:
            client.say({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.key}"}})
            assert (await client.receive())["type"] == "connection_ack"
        return client
