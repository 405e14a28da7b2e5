"""REST: a string no database can keep (a lone surrogate, NUL) is a 400 naming the field, and nothing is written."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.graphql.wire import post
from tests.conftest import LiveServer

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
BAD = ("a \ud800 b", "k\udc00", "a \x00 b")
CASES: list[tuple[dict[str, Any], str]] = [
    *[({"prompt": bad}, "prompt") for bad in BAD],
    *[({"model": bad}, "model") for bad in BAD],
    *[({"aspectRatio": bad}, "aspectRatio") for bad in BAD],
    *[({"quality": bad}, "quality") for bad in BAD],
    *[({"startImageUrl": f"https://images.example.com/{bad}.png"}, "startImageUrl") for bad in BAD],
    # not a field of the request, but hashed with it when an Idempotency-Key is set
    *[({"note": {"tags": [bad]}}, "note.tags[0]") for bad in BAD],
]


async def test_unstorable_text_in_any_field_is_a_400_and_writes_nothing(live_server: LiveServer,
                                                                        make_user: Any) -> None:
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        for change, field in CASES:
            for key in (None, "retry-1"):
                headers = {**user.headers, "content-type": "application/json"}
                if key is not None:
                    headers["Idempotency-Key"] = key
                # json.dumps writes a lone surrogate as its \\ud800 escape, as a JSON client would
                body = json.dumps({**REQUEST, **change})
                r = await client.post("/api/v1/video/generate", content=body, headers=headers)
                assert r.status_code == 400, (change, key, r.text)
                error = r.json()["error"]
                assert error["code"] == "BAD_USER_INPUT" and error["message"].startswith(f"{field}: "), error

        # nothing was written: no video, no credits frozen, and the key is still free for a good request
        listed = (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]
        assert listed["total"] == 0
        me = await post(client, "{ me { credits { available frozen } } }", key=user.key)
        assert me["data"]["me"]["credits"] == {"available": 100, "frozen": 0}
        r = await client.post("/api/v1/video/generate", json=REQUEST,
                              headers={**user.headers, "Idempotency-Key": "retry-1"})
        assert r.status_code == 200, r.text
