from __future__ import annotations

from typing import Any

import httpx

from tests.support import wait_for_status

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


async def test_generated_video_completes_and_settles(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=10)
    r = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
    assert r.status_code == 200, r.text
    uuid = r.json()["data"]["uuid"]
    video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED"
    media = await client.get(video["videoUrl"])
    assert media.status_code == 200 and media.content[4:8] == b"ftyp"
