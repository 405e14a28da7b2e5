"""Operator's view: KENSA_ROUTES and base URLs point at vendor stand-ins; videos end up in our storage.

Every test runs the real gateway (uvicorn, runner, SQLite) against emulators on loopback ports.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.conftest import User
from tests.e2e.gateway import Gateway, StartGateway
from tests.emulators.common import NEVER, POLICY, RETRYABLE, Reply
from tests.support import wait_for_status

REQUESTS = {
    "sora-2": {"prompt": "a paper boat on a canal", "model": "sora-2", "duration": 8, "aspectRatio": "16:9"},
    "veo-3-1": {"prompt": "a lighthouse at dusk", "model": "veo-3-1", "duration": 8, "aspectRatio": "9:16",
                "quality": "1080p"},
    "wan-2-6": {"prompt": "cherry blossoms in wind", "model": "wan-2-6", "duration": 5, "aspectRatio": "4:3"},
    "seedance-1-5": {"prompt": "a man says \"hello\"", "model": "seedance-1-5", "duration": 6,
                     "aspectRatio": "21:9", "quality": "480p"},
}
DIRECT = {"sora-2": ["openai"], "veo-3-1": ["gemini"], "wan-2-6": ["dashscope"], "seedance-1-5": ["ark"]}
ALL_EVOLINK = {model: ["evolink"] for model in REQUESTS}
PRICES = {"sora-2": 2, "veo-3-1": 20, "wan-2-6": 22, "seedance-1-5": 9}  # catalogue prices for REQUESTS


async def generate_all(gateway: Gateway, user: User) -> dict[str, str]:
    return {model: await gateway.generate(user, **request) for model, request in REQUESTS.items()}


@pytest.mark.parametrize("routes", [DIRECT, ALL_EVOLINK], ids=["each-vendor-direct", "evolink-for-all"])
async def test_every_model_completes_through_its_vendor_and_is_served_from_our_storage(
        start_gateway: StartGateway, make_user: object, sample_bytes: bytes,
        routes: dict[str, list[str]]) -> None:
    # given: every model routed to a vendor emulator
    gateway = await start_gateway(routes, vendors=sorted({v for names in routes.values() for v in names}))
    user: User = await make_user(credits=200)  # type: ignore[operator]
    # when: one video per model
    uuids = await generate_all(gateway, user)
    # then: each COMPLETED, from the vendor that served it, with the vendor's file copied to /media
    expected = sample_bytes
    for model, uuid in uuids.items():
        video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
        assert video["status"] == "COMPLETED", (model, video)
        assert video["provider"] == routes[model][0]
        assert video["videoUrl"].startswith(f"{gateway.url}/media/videos/")
        assert video["fileSize"] == len(expected)
        media = await gateway.client.get(video["videoUrl"])
        assert media.status_code == 200 and media.content == expected
        thumbnail = await gateway.client.get(video["thumbnailUrl"])
        # a JPEG cut from the real video
        assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"
        assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]
    balance = await gateway.balance(user)
    assert balance.used == sum(PRICES.values()) and balance.frozen == 0
    assert balance.available == 200 - sum(PRICES.values())


@pytest.mark.parametrize("routes", [DIRECT, ALL_EVOLINK], ids=["each-vendor-direct", "evolink-for-all"])
async def test_a_content_policy_rejection_fails_the_video_and_releases_the_credits(
        start_gateway: StartGateway, make_user: object, routes: dict[str, list[str]]) -> None:
    gateway = await start_gateway(routes, vendors=sorted({v for names in routes.values() for v in names}))
    for emulator in gateway.emulators.values():
        emulator.script.outcome = POLICY
    user: User = await make_user(credits=200)  # type: ignore[operator]
    uuids = await generate_all(gateway, user)
    for uuid in uuids.values():
        video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
        assert video["status"] == "FAILED" and video["videoUrl"] is None
        assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_REFUND"]
    balance = await gateway.balance(user)
    assert (balance.available, balance.frozen, balance.used) == (200, 0, 0)


async def test_a_429_with_retry_after_does_no_harm_and_charges_once(start_gateway: StartGateway,
                                                                   make_user: object) -> None:
    gateway = await start_gateway({"seedance-1-5": ["evolink"]}, vendors=["evolink"])
    evolink = gateway.emulators["evolink"]
    evolink.script.create_replies = [Reply(429, {"error": {"code": 429, "message": "Rate limit exceeded",
                                                           "type": "rate_limit_error",
                                                           "fallback_suggestion": "retry after 60 seconds"}},
                                           headers={"Retry-After": "1"})]
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["seedance-1-5"])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED" and video["provider"] == "evolink"
    first, second = evolink.calls("POST", "/v1/videos/generations")
    assert second.at - first.at >= 1.0  # the vendor's Retry-After was waited out
    assert len(evolink.tasks) == 1
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]
    assert (await gateway.balance(user)).used == PRICES["seedance-1-5"]


async def test_5xx_on_submit_and_on_poll_are_retried(start_gateway: StartGateway, make_user: object) -> None:
    gateway = await start_gateway({"wan-2-6": ["dashscope"]}, vendors=["dashscope"])
    dashscope = gateway.emulators["dashscope"]
    busy = Reply(500,
                 {"code": "InternalError", "message": "An internal error has occured.", "request_id": "r"})
    dashscope.script.create_replies = [busy, busy]
    dashscope.script.poll_replies = [Reply(503, b"Service Unavailable")]
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["wan-2-6"])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED"
    assert len(dashscope.calls("POST", "/api/v1/services")) == 3 and len(dashscope.tasks) == 1
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]


async def test_a_task_slower_than_the_timeout_fails_and_releases(start_gateway: StartGateway,
                                                                make_user: object) -> None:
    gateway = await start_gateway({"veo-3-1": ["gemini"]}, vendors=["gemini"], task_timeout_seconds=1.5)
    gateway.emulators["gemini"].script.outcome = NEVER
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["veo-3-1"])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "FAILED"
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_REFUND"]
    assert (await gateway.balance(user)).available == 50


@pytest.mark.parametrize(("vendor", "model"), [("evolink", "sora-2"), ("dashscope", "wan-2-6"),
                                               ("openai", "sora-2")])
async def test_an_expired_result_link_fails_the_video_and_releases(start_gateway: StartGateway,
                                                                   make_user: object, vendor: str,
                                                                   model: str) -> None:
    gateway = await start_gateway({model: [vendor]}, vendors=[vendor])
    gateway.emulators[vendor].script.download_status = 404 if vendor != "dashscope" else 403
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS[model])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "FAILED" and video["fileSize"] is None
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_REFUND"]
    assert (await gateway.balance(user)).available == 50


async def test_an_unavailable_first_provider_fails_over_to_the_second(start_gateway: StartGateway,
                                                                     make_user: object) -> None:
    gateway = await start_gateway({"seedance-1-5": ["evolink", "ark"]}, vendors=["evolink", "ark"])
    down = Reply(503, {"error": {"code": 503, "message": "Service temporarily unavailable",
                                 "type": "service_unavailable_error"}}, headers={"Retry-After": "0"})
    gateway.emulators["evolink"].script.create_replies = [down] * 20
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["seedance-1-5"])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED" and video["provider"] == "ark"
    assert gateway.emulators["evolink"].tasks == {} and len(gateway.emulators["ark"].tasks) == 1
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]  # one freeze, resolved once


async def test_a_task_failing_for_a_passing_reason_is_made_again_by_the_next_provider(
        start_gateway: StartGateway, make_user: object) -> None:
    gateway = await start_gateway({"seedance-1-5": ["evolink", "ark"]}, vendors=["evolink", "ark"])
    gateway.emulators["evolink"].script.outcome = RETRYABLE
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["seedance-1-5"])
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED" and video["provider"] == "ark"
    assert len(gateway.emulators["evolink"].tasks) == 1 and len(gateway.emulators["ark"].tasks) == 1
    assert await gateway.history(user, uuid) == ["VIDEO_CONSUME", "VIDEO_SETTLE"]


async def test_a_route_skips_a_provider_that_cannot_make_the_request(start_gateway: StartGateway,
                                                                    make_user: object) -> None:
    gateway = await start_gateway({"veo-3-1": ["gemini", "evolink"], "sora-2": ["openai"]},
                                  vendors=["gemini", "evolink", "openai"])
    user: User = await make_user(credits=50)  # type: ignore[operator]
    # Gemini makes 1080p only at 8 seconds: a 4-second 1080p video goes to EvoLink.
    uuid = await gateway.generate(user, **{**REQUESTS["veo-3-1"], "duration": 4})
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "COMPLETED" and video["provider"] == "evolink"
    assert gateway.emulators["gemini"].seen == []
    # OpenAI's API makes 720p only, and nothing else is routed: refused before any credit moves.
    before = await gateway.balance(user)
    r = await gateway.client.post("/api/v1/video/generate", headers=user.headers,
                                  json={**REQUESTS["sora-2"], "quality": "1080p"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_USER_INPUT"
    assert await gateway.balance(user) == before
    listed = await gateway.client.get("/api/v1/video/list", headers=user.headers)
    assert listed.json()["data"]["total"] == 1


async def test_gemini_start_image_goes_through_the_safe_fetcher(start_gateway: StartGateway,
                                                               make_user: object) -> None:
    # The start image's host does not resolve here (no internet): Gemini needs the bytes, so
    # the fetcher refuses, the video fails, and the credits come back; nothing reached Gemini.
    gateway = await start_gateway({"veo-3-1": ["gemini"]}, vendors=["gemini"])
    user: User = await make_user(credits=50)  # type: ignore[operator]
    uuid = await gateway.generate(user, **REQUESTS["veo-3-1"],
                                  startImageUrl="https://images.invalid/first.png")
    video = await wait_for_status(gateway.client, user, uuid, {"COMPLETED", "FAILED"})
    assert video["status"] == "FAILED"
    assert gateway.emulators["gemini"].seen == []
    assert (await gateway.balance(user)).available == 50


async def test_polling_follows_the_configured_interval(start_gateway: StartGateway,
                                                       make_user: object) -> None:
    gateway = await start_gateway({"wan-2-6": ["dashscope"]}, vendors=["dashscope"],
                                  poll_interval_seconds=0.4)
    dashscope = gateway.emulators["dashscope"]
    dashscope.script.generation_seconds = 1.6
    user: User = await make_user(credits=50)  # type: ignore[operator]
    started = time.monotonic()
    uuid = await gateway.generate(user, **REQUESTS["wan-2-6"])
    await wait_for_status(gateway.client, user, uuid, {"COMPLETED"})
    polls = dashscope.calls("GET", "/api/v1/tasks/")
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
    assert gaps and min(gaps) >= 0.35
    assert len(polls) <= (time.monotonic() - started) / 0.4 + 2
    await asyncio.sleep(0)
