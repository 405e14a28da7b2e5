"""Outbound webhooks end to end: a real receiver verifies every delivery with the official
``standardwebhooks`` package; retries keep the ``webhook-id``; a receiver down for the whole window
ends FAILED; a worker dying mid-delivery loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.adapters.db.webhooks_store import WebhooksStore
from kensa_gql.adapters.webhook_sender import WebhookSender, WebhookUrlGuard
from kensa_gql.clock import now_ms
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.domain.webhooks import DeliveryStatus, RetryPolicy, WebhookEvent, new_secret
from kensa_gql.services.webhook_events import record_video_event
from kensa_gql.webhook_worker import WebhookWorker, WebhookWorkerConfig
from tests.conftest import Serve, free_port
from tests.webhook_receiver import Receiver

CREATE_ENDPOINT = """
mutation($url: String!, $events: [WebhookEvent!]) {
  createWebhookEndpoint(url: $url, events: $events) { secret endpoint { id url events enabled } }
}"""
DELIVERIES = """
query($endpointId: ID) {
  webhookDeliveries(endpointId: $endpointId) { total deliveries { id status attempts lastStatusCode event } }
}"""
DELETE_ENDPOINT = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id deleted } }"
GENERATE_VIDEO = "mutation($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid } }"
ROTATE = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { previousSecretExpiresAt } } }"
REDELIVER = "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id status } }"
GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
LOCAL = {"webhooks_allow_http": True, "webhooks_allow_private": True, "webhook_first_retry_seconds": 0.2}


async def graphql(client: httpx.AsyncClient, headers: dict[str, str], query: str, **variables: Any) -> Any:
    r = await client.post("/graphql", headers=headers, json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    return r.json()


async def until(probe: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return found

CANCEL_VIDEO = "mutation($uuid: ID!) { cancelVideo(uuid: $uuid) { outcome video { status } } }"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_cancelled_video_sends_video_cancelled_once(serve: Serve, make_user: Any) -> None:
    # given an endpoint for video.cancelled and a video that takes a minute to render
    receiver = Receiver()
    url = await receiver.start()
    server = serve(**LOCAL, local_generation_seconds=60)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        created = (await graphql(client, user.headers, CREATE_ENDPOINT, url=url + "/hooks",
                                 events=["VIDEO_CANCELLED"]))["data"]["createWebhookEndpoint"]
        made = await graphql(client, user.headers, GENERATE_VIDEO, input=GENERATE)
        uuid = made["data"]["generateVideo"]["uuid"]
        # when its owner cancels it, twice (the second changes nothing)
        for _ in range(2):
            cancelled = (await graphql(client, user.headers, CANCEL_VIDEO, uuid=uuid))["data"]["cancelVideo"]
            assert cancelled == {"outcome": "CANCELLED", "video": {"status": "CANCELLED"}}
        # then the receiver gets one signed video.cancelled whose data reads as the REST task does
        [delivery] = await receiver.wait_for(1)
        body = delivery.verify(created["secret"])
        assert body["type"] == "video.cancelled"
        assert body["data"]["uuid"] == uuid and body["data"]["status"] == "FAILED"  # type: ignore[index]

        async def settled() -> Any:
            log = (await graphql(client, user.headers, DELIVERIES))["data"]["webhookDeliveries"]
            return log if log["deliveries"] and log["deliveries"][0]["status"] == "SUCCEEDED" else None
        assert (await until(settled))["total"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_deliveries_are_signed_retried_with_the_same_id_and_logged(serve: Serve, make_user: Any) -> None:
    # given an endpoint for video.completed whose receiver fails twice, and a video with its own webhookUrl
    endpoint_receiver, own_receiver = Receiver(answers=[500, 503]), Receiver()
    endpoint_url, own_url = await endpoint_receiver.start(), await own_receiver.start()
    server = serve(**LOCAL)
    user, stranger = await make_user(credits=100), await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        created = (await graphql(client, user.headers, CREATE_ENDPOINT, url=endpoint_url + "/hooks",
                                 events=["VIDEO_COMPLETED"]))["data"]["createWebhookEndpoint"]
        secret, endpoint_id = created["secret"], created["endpoint"]["id"]
        assert secret.startswith("whsec_") and created["endpoint"]["events"] == ["VIDEO_COMPLETED"]
        made = await graphql(client, user.headers, GENERATE_VIDEO, input={
            **GENERATE, "webhookUrl": own_url + "/mine", "webhookEvents": ["VIDEO_STARTED", "VIDEO_COMPLETED"]})
        uuid = made["data"]["generateVideo"]["uuid"]

        # then the endpoint's receiver gets the completion three times, the same event each time
        tries = await endpoint_receiver.wait_for(3)
        assert len({t.headers["webhook-id"] for t in tries}) == 1
        for t in tries:
            body = t.verify(secret)
            assert body["type"] == "video.completed"
            assert body["data"]["uuid"] == uuid and body["data"]["status"] == "COMPLETED"  # type: ignore[index]
        # and the video's own receiver gets what it asked for, signed with the account's default secret
        own = await own_receiver.wait_for(2)
        default_secret = (await client.get("/api/v1/webhooks/signing-secret", headers=user.headers)
                          ).json()["data"]["secret"]
        assert sorted(o.verify(default_secret)["type"] for o in own) == ["video.completed", "video.started"]  # type: ignore[type-var]

        # and the log shows the three attempts, ending in success
        async def succeeded() -> Any:
            log = (await graphql(client, user.headers, DELIVERIES, endpointId=endpoint_id))["data"]
            items = log["webhookDeliveries"]["deliveries"]
            return items if items and items[0]["status"] == "SUCCEEDED" else None
        [delivery] = await until(succeeded)
        assert delivery == {"id": tries[0].headers["webhook-id"], "status": "SUCCEEDED", "attempts": 3,
                            "lastStatusCode": 200, "event": "VIDEO_COMPLETED"}

        # when the secret is rotated and the delivery sent again
        rotated = (await graphql(client, user.headers, ROTATE, id=endpoint_id))["data"]["rotateWebhookSecret"]
        assert rotated["secret"] != secret and rotated["endpoint"]["previousSecretExpiresAt"]
        again = (await graphql(client, user.headers, REDELIVER, id=delivery["id"]))["data"]["redeliverWebhook"]
        assert again == {"id": delivery["id"], "status": "PENDING"}
        # then it carries the same id, and verifies with the old secret and with the new one
        fourth = (await endpoint_receiver.wait_for(4))[3]
        assert fourth.headers["webhook-id"] == delivery["id"]
        assert fourth.verify(secret) == fourth.verify(rotated["secret"]) == tries[0].verify(secret)

        # and nobody else sees or touches any of it
        theirs = (await graphql(client, stranger.headers, DELIVERIES))["data"]["webhookDeliveries"]
        assert theirs["total"] == 0
        refused = await graphql(client, stranger.headers, DELETE_ENDPOINT, id=endpoint_id)
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        listed = (await client.get("/api/v1/webhooks", headers=stranger.headers)).json()["data"]["endpoints"]
        assert listed == []
    await endpoint_receiver.stop()
    await own_receiver.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_receiver_down_for_the_whole_window_ends_failed(serve: Serve, make_user: Any) -> None:
    server = serve(**LOCAL, webhook_retry_window_seconds=1.0)
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post("/api/v1/webhooks", headers=user.headers, json={
            "url": f"http://127.0.0.1:{free_port()}/nobody-listens", "events": ["video.completed"]})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["secret"].startswith("whsec_")
        r = await client.post("/api/v1/video/generate", headers=user.headers, json=GENERATE)
        assert r.status_code == 200, r.text

        async def failed() -> Any:
            page = (await client.get("/api/v1/webhooks/deliveries?status=FAILED", headers=user.headers)).json()
            return page["data"]["deliveries"]
        [delivery] = await until(failed)
    assert delivery["event"] == "video.completed" and delivery["attempts"] >= 2
    assert delivery["lastStatusCode"] is None and delivery["lastError"].startswith("could not be sent")
    assert json.loads(delivery["payload"])["data"]["status"] == "COMPLETED"


async def test_a_worker_dying_mid_delivery_loses_nothing(db: Database, make_user: Any) -> None:
    # given a committed completion for an endpoint whose receiver hangs on the first request
    receiver = Receiver(answers=[None])
    url = await receiver.start()
    user = await make_user(credits=100)
    secret = new_secret()
    async with db.writing() as uow:
        await WebhooksStore(uow).add_endpoint(public_id="we_test", user_id=user.user_id, url=url, secret=secret,
                                              events=[WebhookEvent.COMPLETED], now_ms=now_ms())
        video = await VideosStore(uow).add(uuid="00000000-0000-4000-8000-000000000001", user_id=user.user_id,
                                           prompt="p", model="sora-2", duration=4, resolution="720p",
                                           aspect_ratio="16:9", start_image_url=None, credits=1, now_ms=now_ms())
        assert await record_video_event(uow, before=VideoStatus.UPLOADING, now_ms=now_ms(),
                                        after=dataclasses.replace(video, status=VideoStatus.COMPLETED)) == 1
        await uow.commit()
    sender = WebhookSender(WebhookUrlGuard(allow_http=True, allow_private=True), timeout=1.0)
    config = WebhookWorkerConfig(policy=RetryPolicy(first_delay_ms=100), claim_interval=0.1, timeout=1.0,
                                 lease_seconds=0.5)
    # when a worker dies while the receiver holds its request
    first = asyncio.create_task(WebhookWorker(db, sender, config, owner="first").run())
    await receiver.wait_for(1)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    async with db.reading() as uow:
        [waiting], _ = await WebhooksStore(uow).deliveries_of(user.user_id, endpoint_id=None, status=None,
                                                              offset=0, limit=10)
    assert waiting.status is DeliveryStatus.PENDING and waiting.attempts == 0
    # then another worker sends the same event once the lease runs out
    second = asyncio.create_task(WebhookWorker(db, sender, config, owner="second").run())
    try:
        received = await receiver.wait_for(2)
        async def done() -> Any:
            async with db.reading() as uow:
                [d], _ = await WebhooksStore(uow).deliveries_of(user.user_id, endpoint_id=None, status=None,
                                                                offset=0, limit=10)
            return d if d.status is DeliveryStatus.SUCCEEDED else None
        delivered = await until(done)
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await receiver.stop()
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"] == waiting.event_id
    received[1].verify(secret)
    assert delivered.attempts == 1 and delivered.last_status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_progress_is_sent_at_most_once_per_five_seconds_per_video(db: Database, make_user: Any) -> None:
    user = await make_user(credits=100)
    start = now_ms()
    async with db.writing() as uow:
        await WebhooksStore(uow).add_endpoint(public_id="we_p", user_id=user.user_id, url="https://example.com/h",
                                              secret=new_secret(), events=list(WebhookEvent), now_ms=start)
        video = await VideosStore(uow).add(uuid="00000000-0000-4000-8000-000000000002", user_id=user.user_id,
                                           prompt="p", model="sora-2", duration=4, resolution="720p",
                                           aspect_ratio="16:9", start_image_url=None, credits=1, now_ms=start)
        generating = dataclasses.replace(video, status=VideoStatus.GENERATING)
        recorded = [
            await record_video_event(uow, before=VideoStatus.PENDING, after=generating, now_ms=start),
            *[await record_video_event(uow, before=VideoStatus.GENERATING, now_ms=start + ms,
                                       after=dataclasses.replace(generating, progress=p))
              for p, ms in ((10, 1000), (20, 4000), (30, 6000), (40, 7000), (50, 11_500))],
        ]
        await uow.commit()
    # started always; then progress at 1 s, not at 4 s, at 6 s, not at 7 s, at 11.5 s
    assert recorded == [1, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("answer", "failing_for_ms", "reason"), [
    (500, 5 * 24 * 3_600_000 + 1, "every delivery failed for 5 days"),
    (410, 0, "the receiver answered 410 Gone"),
], ids=["five-days", "gone"])
async def test_an_endpoint_failing_for_five_days_or_gone_is_disabled_and_says_so(
        db: Database, make_user: Any, answer: int, failing_for_ms: int, reason: str) -> None:
    user = await make_user(credits=100)
    now = now_ms()
    receiver = Receiver(answers=[answer])
    url = await receiver.start()
    async with db.writing() as uow:
        store = WebhooksStore(uow)
        endpoint = await store.add_endpoint(public_id="we_d", user_id=user.user_id, secret=new_secret(),
                                            url=url, events=list(WebhookEvent), now_ms=now)
        await store.update_endpoint(endpoint.id, failing_since_ms=now - failing_for_ms)
        video = await VideosStore(uow).add(uuid="00000000-0000-4000-8000-000000000003", user_id=user.user_id,
                                           prompt="p", model="sora-2", duration=4, resolution="720p",
                                           aspect_ratio="16:9", start_image_url=None, credits=1, now_ms=now)
        await record_video_event(uow, before=VideoStatus.UPLOADING, now_ms=now,
                                 after=dataclasses.replace(video, status=VideoStatus.FAILED))
        await uow.commit()
    sender = WebhookSender(WebhookUrlGuard(allow_http=True, allow_private=True), timeout=1.0)
    worker = WebhookWorker(db, sender, WebhookWorkerConfig(policy=RetryPolicy()))
    assert await worker.send_due() == 1
    await receiver.stop()
    async with db.reading() as uow:
        disabled = await WebhooksStore(uow).endpoint_by_id(endpoint.id)
    assert disabled is not None and disabled.disabled_at_ms is not None
    assert disabled.disabled_reason == reason


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_send_the_url_guard_refuses_is_counted_as_refused_and_not_timed(db: Database, make_user: Any) -> None:
    # given a completion for an endpoint whose address is loopback, and private addresses refused
    user = await make_user(credits=100)
    async with db.writing() as uow:
        await WebhooksStore(uow).add_endpoint(public_id="we_refused", user_id=user.user_id, url="http://127.0.0.1:9/h",
                                              secret=new_secret(), events=[WebhookEvent.COMPLETED], now_ms=now_ms())
        video = await VideosStore(uow).add(uuid="00000000-0000-4000-8000-000000000003", user_id=user.user_id,
                                           prompt="p", model="sora-2", duration=4, resolution="720p",
                                           aspect_ratio="16:9", start_image_url=None, credits=1, now_ms=now_ms())
        assert await record_video_event(uow, before=VideoStatus.UPLOADING, now_ms=now_ms(),
                                        after=dataclasses.replace(video, status=VideoStatus.COMPLETED)) == 1
        await uow.commit()
    worker = WebhookWorker(db, WebhookSender(WebhookUrlGuard(allow_http=True)),
                           WebhookWorkerConfig(policy=RetryPolicy(first_delay_ms=60_000)))

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {o: sample("kensa_webhook_deliveries_total", outcome=o) for o in ("refused", "retrying", "failed")}
    timed = sample("kensa_webhook_delivery_duration_seconds_count")
    # when a worker takes it
    assert await worker.send_due() == 1
    # then the attempt is recorded as refused (and will be retried), counted once, and not timed as a send
    async with db.reading() as uow:
        [delivery], _ = await WebhooksStore(uow).deliveries_of(user.user_id, endpoint_id=None, status=None,
                                                               offset=0, limit=10)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1
    assert (delivery.last_error or "").startswith("refused:")
    after = {o: sample("kensa_webhook_deliveries_total", outcome=o) for o in ("refused", "retrying", "failed")}
    assert {o: after[o] - before[o] for o in after} == {"refused": 1, "retrying": 0, "failed": 0}
    assert sample("kensa_webhook_delivery_duration_seconds_count") == timed
