from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import wait_for_status


@pytest.mark.parametrize(("model", "duration", "aspect", "quality"), [
    ("sora-2", 4, "9:16", "720p"), ("veo-3-1", 4, "16:9", "720p"), ("wan-2-6", 5, "4:3", "720p"),
    ("seedance-1-5", 4, "21:9", "480p"),
])
async def test_each_model_generates_a_playable_video(client: httpx.AsyncClient, make_user: Any, model: str,
                                                     duration: int, aspect: str, quality: str) -> None:
    import av

    user = await make_user(credits=100)
    r = await client.post("/api/v1/video/generate", headers=user.headers, json={
        "prompt": f"a lighthouse at dusk by {model}", "model": model, "duration": duration,
        "aspectRatio": aspect, "quality": quality})
    assert r.status_code == 200, r.text
    video = await wait_for_status(client, user, r.json()["data"]["uuid"], {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED"
    media = await client.get(video["videoUrl"])
    assert media.status_code == 200 and media.headers["content-type"] == "video/mp4"
    import io

    with av.open(io.BytesIO(media.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        width, height = stream.codec_context.width, stream.codec_context.height
        assert abs(float(container.duration or 0) / 1_000_000 - duration) < 0.5
    w, h = (int(x) for x in aspect.split(":"))
    assert abs(width / height - w / h) < 0.02
    assert min(width, height) == int(quality.rstrip("p"))
