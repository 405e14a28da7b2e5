"""Helpers for tests that talk to a live server."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import httpx


class HasHeaders(Protocol):
    @property
    def headers(self) -> dict[str, str]: ...


async def wait_for_status(client: httpx.AsyncClient, user: HasHeaders, uuid: str, statuses: set[str],
                          timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/api/v1/video/{uuid}", headers=user.headers)
        data: dict[str, Any] = r.json()["data"]
        if data["status"] in statuses:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"video {uuid} stuck in {data['status']}")
        await asyncio.sleep(0.1)
