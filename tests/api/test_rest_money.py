"""Money under pressure: bursts, idempotent retries, failures, timeouts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.clock import now_ms
from kensa_gql.services import accounts
from tests.conftest import LiveServer, Serve
from tests.support import wait_for_status

GENERATE = {"prompt": "a burst", "model": "sora-2", "duration": 10, "aspectRatio": "16:9"}


async def balance_of(db: Database, user: Any) -> accounts.Balance:
    return await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)


async def test_forty_concurrent_generates_on_a_balance_for_seven_accept_exactly_seven(
        client: httpx.AsyncClient, make_user: Any, db: Database) -> None:
    # given 14 credits: seven 2-credit videos
    user = await make_user(credits=14)
    # when 40 requests arrive at once
    responses = await asyncio.gather(*[
        client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers) for _ in range(40)])
    # then exactly 7 are accepted and 33 refused with 402, and the ledger agrees
    assert Counter(r.status_code for r in responses) == {200: 7, 402: 33}
    balance = await balance_of(db, user)
    assert balance.available == 0 and balance.frozen + balance.used == 14 and balance.total == 14
    listing = (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]
    assert listing["total"] == 7


async def test_the_same_idempotency_key_and_body_charges_once(client: httpx.AsyncClient, make_user: Any,
                                                              db: Database) -> None:
    user = await make_user(credits=10)
    headers = {**user.headers, "Idempotency-Key": "order-42"}
    first = await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)
    second = await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert (await balance_of(db, user)).available == 8
    # keys are per user: another user may use the same key
    other = await make_user(credits=10)
    third = await client.post("/api/v1/video/generate", json=GENERATE,
                              headers={**other.headers, "Idempotency-Key": "order-42"})
    assert third.status_code == 200 and third.json()["data"]["uuid"] != first.json()["data"]["uuid"]


async def test_concurrent_retries_with_one_key_create_one_video(client: httpx.AsyncClient, make_user: Any,
                                                                db: Database) -> None:
    user = await make_user(credits=10)
    headers = {**user.headers, "Idempotency-Key": "double-click"}
    responses = await asyncio.gather(*[
        client.post("/api/v1/video/generate", json=GENERATE, headers=headers) for _ in range(8)])
    ok = [r for r in responses if r.status_code == 200]
    assert ok and all(r.status_code in (200, 409) for r in responses)
    assert len({r.json()["data"]["uuid"] for r in ok}) == 1
    assert (await balance_of(db, user)).available == 8


async def test_reusing_a_key_with_another_body_is_a_422(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=10)
    headers = {**user.headers, "Idempotency-Key": "k-1"}
    await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)
    r = await client.post("/api/v1/video/generate", json={**GENERATE, "prompt": "other"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_a_key_still_being_processed_is_a_409(client: httpx.AsyncClient, make_user: Any,
                                                    db: Database) -> None:
    user = await make_user(credits=10)
    # given a first request that has claimed the key but not finished
    async with db.writing() as uow:
        from kensa_gql.services.videos import _request_hash

        await VideosStore(uow).insert_idempotency(user.user_id, "in-flight", _request_hash(GENERATE), now_ms())
        await uow.commit()
    r = await client.post("/api/v1/video/generate", json=GENERATE,
                          headers={**user.headers, "Idempotency-Key": "in-flight"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert (await balance_of(db, user)).available == 10


async def test_a_402_is_not_remembered_so_the_key_works_after_a_top_up(client: httpx.AsyncClient, make_user: Any,
                                                                       db: Database) -> None:
    user = await make_user(credits=1)
    headers = {**user.headers, "Idempotency-Key": "retry-after-topup"}
    assert (await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)).status_code == 402
    await accounts.grant_credits(user.email, 5, db=db)
    assert (await client.post("/api/v1/video/generate", json=GENERATE, headers=headers)).status_code == 200


async def generate_and_settle(server: LiveServer, user: Any, *, timeout: float = 30) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)).json()[
            "data"]["uuid"]
        video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"}, timeout=timeout)
        history = (await client.get("/api/v1/credit/history", headers=user.headers)).json()["data"]
    video["history"] = [t["transType"] for t in history["transactions"]]
    return video


async def test_a_failed_generation_releases_the_frozen_credits(serve: Serve, make_user: Any, db: Database) -> None:
    server = serve(local_failure_rate=1.0)
    user = await make_user(credits=10)
    video = await generate_and_settle(server, user)
    assert video["status"] == "FAILED" and video["videoUrl"] is None
    balance = await balance_of(db, user)
    assert (balance.available, balance.frozen, balance.used) == (10, 0, 0)
    assert video["history"] == ["VIDEO_REFUND", "VIDEO_CONSUME", "GIFT"]


async def test_a_task_older_than_the_timeout_fails_and_releases(serve: Serve, make_user: Any, db: Database) -> None:
    server = serve(local_generation_seconds=30.0, task_timeout_seconds=1.0)
    user = await make_user(credits=10)
    video = await generate_and_settle(server, user)
    assert video["status"] == "FAILED"
    assert (await balance_of(db, user)).available == 10
    assert video["history"] == ["VIDEO_REFUND", "VIDEO_CONSUME", "GIFT"]
