"""Vendor callbacks are hints: they speed a task up, they never settle it themselves."""

from __future__ import annotations

import logging
import time

import pytest

from tests.conftest import User
from tests.e2e.gateway import StartGateway, key_free
from tests.emulators.common import Reply
from tests.emulators.fixtures import KEYS
from tests.support import wait_for_status

PUBLIC = "https://gateway.example.com"
REQUEST = {"prompt": "a kite over dunes", "model": "seedance-1-5", "duration": 5, "aspectRatio": "16:9"}


@pytest.mark.parametrize("vendor", ["evolink", "ark"])
async def test_a_callback_before_the_next_poll_completes_the_video_at_once(
        start_gateway: StartGateway, make_user: object, vendor: str) -> None:
    # given: polling every 60 s, so only the callback can make this quick
    gateway = await start_gateway({"seedance-1-5": [vendor]}, vendors=[vendor], public_url=PUBLIC,
                                  poll_interval_seconds=60)
    emulator = gateway.emulators[vendor]
    emulator.script.callback = "on_complete"
    emulator.script.deliver_to = gateway.url
    # Long enough that the poll right after submitting still sees it running, even on a loaded
    # machine: only the callback can then finish it within the 60 s poll interval.
    emulator.script.generation_seconds = 3.0
    user: User = await make_user(credits=50)  # type: ignore[operator]
    started = time.monotonic()
    # when
    uuid = await gateway.generate(user, **REQUEST)
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"}, timeout=20)
    # then: the gateway re-fetched the task from the vendor and finished well inside one interval
    assert video["status"] == "COMPLETED" and time.monotonic() - started < 20
    [create] = emulator.calls("POST", "/v1/videos" if vendor == "evolink" else "/api/v3")
    callback_url = create.body["callback_url"]
    assert callback_url.startswith(f"{PUBLIC}/webhooks/{vendor}/{uuid}/")
    assert emulator.callback_statuses == [200]
    polls = emulator.calls("GET", "/v1/tasks/" if vendor == "evolink" else "/api/v3/contents")
    assert len(polls) == 2  # right after submitting, and once more when the callback came
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]


@pytest.mark.parametrize("vendor", ["evolink", "ark"])
async def test_late_duplicate_and_out_of_order_callbacks_change_nothing(
        start_gateway: StartGateway, make_user: object, vendor: str) -> None:
    gateway = await start_gateway({"seedance-1-5": [vendor]}, vendors=[vendor], public_url=PUBLIC)
    emulator = gateway.emulators[vendor]
    emulator.script.callback = "after_poll"       # only once the gateway has seen completion by polling
    emulator.script.callback_copies = 3           # delivered three times
    emulator.script.stale_callback_after = True   # and then a stale "still running" one
    emulator.script.deliver_to = gateway.url
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUEST)
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED"
    deadline = time.monotonic() + 10
    while len(emulator.callback_statuses) < 4 and time.monotonic() < deadline:
        await gateway.client.get("/healthz")
    assert emulator.callback_statuses == [200, 200, 200, 200]  # acknowledged, so the vendor stops retrying
    again = (await gateway.client.get(f"/api/v1/video/{uuid}", headers=user.headers)).json()["data"]
    assert again == video
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]


async def test_forged_and_unknown_callbacks(start_gateway: StartGateway, make_user: object) -> None:
    gateway = await start_gateway({"seedance-1-5": ["ark"]}, vendors=["ark"], public_url=PUBLIC)
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUEST)
    await wait_for_status(gateway.client, user, uuid, {"COMPLETED"})
    [create] = gateway.emulators["ark"].calls("POST", "/api/v3")
    token = create.body["callback_url"].rsplit("/", 1)[1]
    # a guessed token, a token for another video or provider: 404, nothing looked up
    for path in (f"/webhooks/ark/{uuid}/not-the-token", f"/webhooks/evolink/{uuid}/{token}",
                 f"/webhooks/ark/00000000-0000-4000-8000-000000000000/{token}"):
        r = await gateway.client.post(path, json={"id": "cgt-1", "status": "succeeded"})
        assert r.status_code == 404, path
    # the right token for a finished video: acknowledged and ignored
    r = await gateway.client.post(f"/webhooks/ark/{uuid}/{token}", content=b"not even json")
    assert r.status_code == 200 and r.json() == {"received": True, "acted": False}


async def test_no_callback_url_is_sent_without_an_https_public_url(start_gateway: StartGateway,
                                                                  make_user: object) -> None:
    gateway = await start_gateway({"seedance-1-5": ["evolink"]}, vendors=["evolink"])
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUEST)
    await wait_for_status(gateway.client, user, uuid, {"COMPLETED"})
    [create] = gateway.emulators["evolink"].calls("POST", "/v1/videos")
    assert "callback_url" not in create.body


async def test_vendor_keys_never_reach_logs_errors_or_responses(start_gateway: StartGateway,
                                                                make_user: object,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway({"seedance-1-5": ["evolink", "ark"], "veo-3-1": ["gemini"],
                                   "sora-2": ["openai"]}, vendors=["evolink", "ark", "gemini", "openai"],
                                  public_url=PUBLIC)
    # EvoLink echoes the key it was given (as some APIs do) in a 401, so the task fails over to Ark.
    echo = Reply(401, {"error": {"code": 401, "message": f"Invalid API key: {KEYS['evolink']}",
                                 "type": "authentication_error"}})
    gateway.emulators["evolink"].script.create_replies = [echo] * 10
    gateway.emulators["openai"].script.create_replies = [
        Reply(400,
              {"error": {"message": f"bad request from key {KEYS['openai']}", "type": "invalid_request_error",
                              "param": None, "code": None}})]
    user: User = await make_user(credits=100)  # type: ignore[operator]
    done = await gateway.generate(user, **REQUEST)
    veo = await gateway.generate(user, prompt="fog", model="veo-3-1", duration=8, aspectRatio="16:9")
    refused = await gateway.generate(user, prompt="boat", model="sora-2", duration=4, aspectRatio="16:9")
    for uuid in (done, veo, refused):
        await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    uuids = (done, veo, refused)
    responses = [await gateway.client.get(f"/api/v1/video/{u}", headers=user.headers) for u in uuids]
    responses.append(await gateway.client.get("/api/v1/video/list", headers=user.headers))
    responses.append(await gateway.client.get("/api/v1/credit/history", headers=user.headers))
    assert all(key_free(r.text) for r in responses)
    assert responses[0].json()["data"]["provider"] == "ark"
    assert responses[2].json()["data"]["status"] == "FAILED"
    # The stored error messages (shown by GraphQL) are redacted too.
    from kensa_gql.adapters.db.videos_store import VideosStore

    async with gateway.db.reading() as uow:
        stored = [await VideosStore(uow).get_by_uuid(u) for u in (done, veo, refused)]
    assert all(v is not None and key_free(v.error_message or "") for v in stored)
    assert stored[2] is not None and "[redacted]" in (stored[2].error_message or "")
    # Every log line, including warnings about the 401s and the failover, is key-free.
    assert any("evolink" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert key_free(record.getMessage()), record.getMessage()
        assert key_free(str(record.exc_text or "")), record.exc_text
