"""Talking GraphQL to a live server: HTTP posts and raw WebSocket sessions with timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

RECEIVE_TIMEOUT = 15.0

VIDEO_FIELDS = """
  id uuid prompt model status progress provider videoUrl thumbnailUrl startImageUrl duration resolution
  aspectRatio fileSize creditsUsed generationTime createdAt completedAt errorMessage
"""
GENERATE = """
mutation Generate($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id uuid status progress creditsUsed }
}
"""
VIDEO_STATUS = """
subscription Follow($uuid: ID!) {
  videoStatus(uuid: $uuid) { id uuid status progress videoUrl creditsUsed }
}
"""
REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


async def post(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *,
               key: str | None = None, expect_status: int = 200) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert r.status_code == expect_status, r.text
    body: dict[str, Any] = r.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def generate(client: httpx.AsyncClient, key: str, **changes: Any) -> str:
    body = await post(client, GENERATE, {"input": {**REQUEST, **changes}}, key=key)
    assert "errors" not in body, body
    uuid: str = body["data"]["generateVideo"]["uuid"]
    return uuid


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/graphql"


class Session:
    """One WebSocket; every receive has a timeout so a missing message fails instead of hanging."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, within: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within))
        return message

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": op_id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables or {}}})

    async def start(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        """The legacy graphql-ws protocol's way to subscribe."""
        await self.send({"id": op_id, "type": "start",
                         "payload": {"query": query, "variables": variables or {}}})

    async def until_done(self, op_id: str,
                         done: tuple[str, ...] = ("complete", "error")) -> list[dict[str, Any]]:
        """Every message for ``op_id`` up to and including its complete or error."""
        seen = []
        while True:
            message = await self.receive()
            if message.get("id") != op_id:
                continue
            seen.append(message)
            if message["type"] in done:
                return seen

    async def closed_with(self) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; returns its close code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), RECEIVE_TIMEOUT)
        except Exception:
            pass
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()


async def open_session(base: str, *, protocol: str = "graphql-transport-ws",
                       init: dict[str, Any] | None = None, key: str | None = None,
                       headers: dict[str, str] | None = None, origin: str | None = None) -> Session:
    """Connect and, when ``init`` or ``key`` is given, send connection_init (the ack is not awaited)."""
    ws = await connect(ws_url(base), subprotocols=[protocol],  # type: ignore[list-item]
                       additional_headers=headers or {}, origin=origin,  # type: ignore[arg-type]
                       open_timeout=RECEIVE_TIMEOUT, compression=None)
    session = Session(ws)
    if key is not None:
        init = {"Authorization": f"Bearer {key}"}
    if init is not None:
        await session.send({"type": "connection_init", "payload": init})
    return session


async def eventually(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if condition():
                return
        except RuntimeError:  # the server's thread resized a dict while this one counted
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
