"""Helpers for tests that talk to a live server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from kensa_gql.domain.ports import StoredFile


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


class MemoryStorage:
    """The Storage port in memory: what was stored, and what was deleted since."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.deleted: list[str] = []

    async def check(self) -> None:
        return None

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        self.files[key] = source.read_bytes()
        source.unlink()
        return StoredFile(url=f"memory://{key}", size=len(self.files[key]))

    async def delete(self, key: str) -> None:
        self.files.pop(key, None)
        self.deleted.append(key)
