"""A deleted video's media is gone from its URLs, whichever transport deleted it and whenever."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import videos
from kensa_gql.services import accounts
from tests.conftest import Serve
from tests.support import wait_for_status

DELETE = "mutation Delete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }"
GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


async def delete(client: httpx.AsyncClient, transport: str, uuid: str, headers: dict[str, str]) -> None:
    if transport == "rest":
        r = await client.delete(f"/api/v1/video/{uuid}", headers=headers)
        assert r.json() == {"success": True, "data": {"uuid": uuid, "deleted": True}}
    else:
        r = await client.post("/graphql", json={"query": DELETE, "variables": {"uuid": uuid}}, headers=headers)
        assert r.json() == {"data": {"deleteVideo": {"uuid": uuid, "deleted": True}}}


@pytest.mark.parametrize("transport", ["rest", "graphql"])
async def test_a_deleted_videos_media_answers_404(transport: str, client: httpx.AsyncClient,
                                                   make_user: Any) -> None:
    user = await make_user(credits=100)
    uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)).json()["data"]["uuid"]
    video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"})
    urls = [video["videoUrl"], video["thumbnailUrl"]]
    assert [(await client.get(url)).status_code for url in urls] == [200, 200]
    # when its owner deletes it
    await delete(client, transport, uuid, user.headers)
    # then neither the video nor its thumbnail is served any more
    assert [(await client.get(url)).status_code for url in urls] == [404, 404]


@pytest.mark.parametrize("transport", ["rest", "graphql"])
async def test_a_video_deleted_in_flight_is_cancelled_and_never_publishes_media(
        transport: str, serve: Serve, db: Database, make_user: Any) -> None:
    server = serve(local_generation_seconds=1.5)
    media = server.app.state.settings.media_dir.resolve()
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        created = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
        uuid = created.json()["data"]["uuid"]
        # given a video still being generated, deleted by its owner
        await delete(client, transport, uuid, user.headers)
        # then it was cancelled first (never charged) and nothing of it is ever published
        async with db.reading() as uow:
            row = (await uow.conn.execute(select(videos.c.status, videos.c.video_url, videos.c.failure_code)
                                          .where(videos.c.uuid == uuid))).one()
        assert (row.status, row.video_url, row.failure_code) == ("CANCELLED", None, "CANCELLED")
        # the render the cancel could not interrupt leaves nothing behind once it ends
        for _ in range(300):
            if not list(media.rglob(f"{uuid}*")):
                break
            await asyncio.sleep(0.1)
        for url in (f"/media/videos/{uuid}.mp4", f"/media/thumbnails/{uuid}.jpg"):
            assert (await client.get(url)).status_code == 404
    assert not list(media.rglob(f"{uuid}*"))  # neither published nor left in the work directory
    balance = await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)
    assert (balance.available, balance.frozen, balance.used) == (100, 0, 0)
