"""A video read over REST is remembered (SQLite, adapters/db/reads.py), never served stale.

The gateway answers a repeated ``GET /api/v1/video/{uuid}`` from memory only while nothing has
been committed to the database since it read the row; any commit, from this process or another,
makes the next read go to the database again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.reads import Reads
from kensa_gql.adapters.db.uow import Database
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.videos import VideoStatus
from tests.conftest import LiveServer

GENERATE = {"prompt": "a kite over dunes", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


@pytest.fixture
def reads(live_server: LiveServer) -> Reads:
    reads: Reads = live_server.app.state.deps.db.reads
    if not reads.fast:
        pytest.skip("only the SQLite fast path remembers videos")
    return reads


async def test_a_repeated_read_is_answered_from_memory(client: httpx.AsyncClient, reads: Reads,
                                                       make_user: Any) -> None:
    user = await make_user(credits=10)
    uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)).json()["data"]["uuid"]
    first = await client.get(f"/api/v1/video/{uuid}", headers=user.headers)
    before = reads.remembered
    again = await client.get(f"/api/v1/video/{uuid}", headers=user.headers)
    assert reads.remembered == before + 1 and again.content == first.content


async def test_every_commit_makes_the_next_read_see_the_database(
        client: httpx.AsyncClient, reads: Reads, db: Database, make_user: Any, settings: Any) -> None:
    # given: a video read once, so remembered
    owner, other = await make_user(credits=10), await make_user(credits=10)
    uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=owner.headers)).json()["data"]["uuid"]

    async def read(user: Any = owner) -> httpx.Response:
        return await client.get(f"/api/v1/video/{uuid}", headers=user.headers)

    assert (await read()).json()["data"]["status"] == "PENDING"

    # when the runner's kind of write commits (another connection of the gateway's database)
    async with db.writing() as uow:
        store = VideosStore(uow)
        video = await store.get_by_uuid(uuid)
        assert video is not None
        await store.update_status(video, status=VideoStatus.GENERATING.value, progress=40)
        await uow.commit()
    data = (await read()).json()["data"]
    assert (data["status"], data["uuid"]) == ("GENERATING", uuid)

    # when another process writes (a plain sqlite3 connection)
    path = settings.database_url.split("///", 1)[1]

    def write_elsewhere() -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE videos SET status = 'FAILED' WHERE uuid = ?", (uuid,))

    await asyncio.to_thread(write_elsewhere)
    assert (await read()).json()["data"]["status"] == "FAILED"

    # then: another user never gets it, remembered or not; a deletion is seen at once
    assert (await read()).status_code == 200
    assert (await read(other)).status_code == 404
    assert (await client.delete(f"/api/v1/video/{uuid}", headers=owner.headers)).status_code == 200
    assert (await read()).status_code == 404
