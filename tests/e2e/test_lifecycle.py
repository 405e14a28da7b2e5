"""Cancel and deadlines end to end: REST, GraphQL over HTTP and over WebSocket, on both databases.

The statuses a video is cancelled in are set up in the database the served gateway uses (its
runner off), so each is hit exactly; the ledger is audited after each transport's round.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import update

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import videos
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.ledger import HoldStatus
from kensa_gql.domain.videos import Video, VideoStatus
from kensa_gql.runner import Runner
from tests.api.graphql.wire import REQUEST, VIDEO_STATUS, codes, eventually, open_session, post
from tests.audit import audit_ledger
from tests.conftest import Serve
from tests.services.test_cancel import CONFIG, OWNER, make_deps, put_in

S = VideoStatus
CANCEL = """
mutation Cancel($uuid: ID!) {
  cancelVideo(uuid: $uuid) { outcome video { uuid status failure { code retryable message } } }
}
"""
READ = "query Read($uuid: ID!) { video(uuid: $uuid) { status errorMessage failure { code retryable } } }"
GENERATE = """
mutation Generate($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid status } }
"""
DETAIL_KEYS = {"uuid", "prompt", "model", "status", "provider", "videoUrl", "thumbnailUrl", "startImageUrl",
               "duration", "resolution", "aspectRatio", "fileSize", "creditsUsed", "generationTime", "createdAt",
               "completedAt"}


async def stored(db: Database, uuid: str) -> Video:
    async with db.reading() as uow:
        video = await VideosStore(uow).get_by_uuid(uuid)
    assert video is not None
    return video


async def cancel_via(transport: str, client: httpx.AsyncClient, base: str, key: str, uuid: str
                     ) -> tuple[str, str]:
    """(outcome, status) of a cancel through one transport; status as that transport shows it."""
    if transport == "rest":
        r = await client.post(f"/api/v1/video/{uuid}/cancel", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and set(r.json()["data"]) == {"uuid", "outcome", "status"}, r.text
        data = r.json()["data"]
        return data["outcome"], data["status"]
    if transport == "http":
        body = await post(client, CANCEL, {"uuid": uuid}, key=key)
    else:
        session = await open_session(base, key=key)
        try:
            assert (await session.receive())["type"] == "connection_ack"
            await session.subscribe("c", CANCEL, {"uuid": uuid})
            messages = await session.until_done("c")
        finally:
            await session.close()
        assert [m["type"] for m in messages] == ["next", "complete"], messages
        body = messages[0]["payload"]
    result = body["data"]["cancelVideo"]
    if result["outcome"] == "CANCELLED":
        assert result["video"]["failure"] == {"code": "CANCELLED", "retryable": True,
                                              "message": "cancelled by its owner"}
    return result["outcome"], result["video"]["status"]


async def test_cancel_in_each_status_through_each_transport(serve: Serve, db: Database, make_user: Any) -> None:
    server = serve(run_worker=False)  # nothing moves the videos but the test and the cancels
    user, other = await make_user(credits=1000), await make_user(credits=10)
    # Completes videos in the test's own loop and engine (the server's belong to its thread).
    deps = make_deps(db)[0]
    runner = Runner(deps, storage=deps.storage, pool=None, http=None, config=CONFIG,  # type: ignore[arg-type]
                    owner=OWNER)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async def new_video(status: VideoStatus) -> str:
            r = await client.post("/api/v1/video/generate", json=REQUEST, headers=user.headers)
            video = await put_in(db, await stored(db, r.json()["data"]["uuid"]), status)
            if status is S.COMPLETED:
                await runner._transition(await put_in(db, video, S.UPLOADING), S.COMPLETED)
            return video.uuid

        for transport in ("rest", "http", "ws"):
            for status in (S.PENDING, S.GENERATING, S.UPLOADING, S.COMPLETED):
                uuid = await new_video(status)
                outcome, shown = await cancel_via(transport, client, server.url, user.key, uuid)
                if status is S.COMPLETED:
                    assert (outcome, shown) == ("ALREADY_FINISHED", "COMPLETED")
                    continue
                # REST knows five statuses: a cancelled video reads FAILED there, GraphQL says CANCELLED
                assert (outcome, shown) == ("CANCELLED", "FAILED" if transport == "rest" else "CANCELLED")
                assert (await stored(db, uuid)).status is S.CANCELLED
                detail = (await client.get(f"/api/v1/video/{uuid}", headers=user.headers)).json()["data"]
                assert set(detail) == DETAIL_KEYS and detail["status"] == "FAILED"
                # idempotent: the same answer again
                assert (await cancel_via(transport, client, server.url, user.key, uuid))[0] == "CANCELLED"
            audit = await audit_ledger(db, user.user_id)
            assert audit.frozen == 0 and audit.tasks_left == 0, audit

        audit = await audit_ledger(db, user.user_id)
        assert audit.holds == {HoldStatus.VOIDED: 9, HoldStatus.POSTED: 3}

        # another user's video: REST answers its usual 404, GraphQL the NOT_FOUND outcome
        r = await client.post("/api/v1/video/generate", json=REQUEST, headers=other.headers)
        theirs = r.json()["data"]["uuid"]
        r = await client.post(f"/api/v1/video/{theirs}/cancel", headers=user.headers)
        assert r.status_code == 404 and r.json() == {"success": False, "error": {
            "code": "NOT_FOUND", "message": "video not found"}}
        body = await post(client, CANCEL, {"uuid": theirs}, key=user.key)
        assert body == {"data": {"cancelVideo": {"outcome": "NOT_FOUND", "video": None}}}
        assert (await stored(db, theirs)).status is S.PENDING

        # a subscriber of a running video gets the cancelled state, then its subscription completes
        uuid = await new_video(S.GENERATING)
        session = await open_session(server.url, key=user.key)
        assert (await session.receive())["type"] == "connection_ack"
        await session.subscribe("follow", VIDEO_STATUS, {"uuid": uuid})
        first = await session.receive()
        assert first["payload"]["data"]["videoStatus"]["status"] == "GENERATING"
        await cancel_via("rest", client, server.url, user.key, uuid)
        rest = await session.until_done("follow")
        await session.close()
        assert [m["type"] for m in rest] == ["next", "complete"], rest
        assert rest[0]["payload"]["data"]["videoStatus"]["status"] == "CANCELLED"


async def past_deadline(db: Database, uuid: str) -> None:
    """Bring a video's deadline to now: the test does not wait the 5 seconds a deadline is at least."""
    async with db.writing() as uow:
        await uow.conn.execute(update(videos).where(videos.c.uuid == uuid).values(deadline_at_ms=now_ms()))
        await uow.commit()


async def until_status(db: Database, uuid: str, status: VideoStatus) -> Video:
    for _ in range(300):
        video = await stored(db, uuid)
        if video.status is status:
            return video
        await asyncio.sleep(0.05)
    raise AssertionError(f"video {uuid} stayed {video.status}")


async def test_a_deadline_is_enforced_with_the_runner_stopped(serve: Serve, db: Database, make_user: Any) -> None:
    server = serve(run_worker=False, deadline_sweep_seconds=0.1)  # an API process alone: no runner at all
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # malformed or out-of-range Cancel-After headers are a 400, and nothing is charged
        for value in ("4s", "24h1s", "90", "1d", "5 m", "-5s", ""):
            r = await client.post("/api/v1/video/generate", json=REQUEST,
                                  headers={**user.headers, "Cancel-After": value})
            assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_USER_INPUT", (value, r.text)
        body = await post(client, GENERATE, {"input": {**REQUEST, "deadlineSeconds": 4}}, key=user.key)
        assert codes(body) == ["BAD_USER_INPUT"]
        assert (await audit_ledger(db, user.user_id)).holds == {}
        # given videos with deadlines, by header and by input, that nothing will ever run
        r = await client.post("/api/v1/video/generate", json=REQUEST, headers={**user.headers, "Cancel-After": "1h30m"})
        assert r.status_code == 200 and set(r.json()["data"]) == {"uuid", "status", "model", "creditsUsed",
                                                                  "createdAt"}
        by_header = r.json()["data"]["uuid"]
        assert (await stored(db, by_header)).created_at_ms + 5_400_000 == await deadline_of(db, by_header)
        body = await post(client, GENERATE, {"input": {**REQUEST, "deadlineSeconds": 30}}, key=user.key)
        by_input = body["data"]["generateVideo"]["uuid"]
        # when their deadlines pass, nobody reading them
        for uuid in (by_header, by_input):
            await past_deadline(db, uuid)
        # then the API process's sweep stops them: FAILED, DEADLINE_EXCEEDED, credits released
        for uuid in (by_header, by_input):
            video = await until_status(db, uuid, S.FAILED)
            assert video.failure_code is not None and video.failure_code.value == "DEADLINE_EXCEEDED"
        read = await post(client, READ, {"uuid": by_input}, key=user.key)
        assert read["data"]["video"] == {"status": "FAILED", "errorMessage": "not finished by its deadline",
                                         "failure": {"code": "DEADLINE_EXCEEDED", "retryable": True}}
    audit = await audit_ledger(db, user.user_id)
    assert (audit.available, audit.frozen, audit.tasks_left) == (100, 0, 0)
    assert audit.holds == {HoldStatus.VOIDED: 2}


async def deadline_of(db: Database, uuid: str) -> int | None:
    async with db.reading() as uow:
        return await VideosStore(uow).deadline_of((await VideosStore(uow).get_by_uuid(uuid)).id)  # type: ignore[union-attr]


async def test_a_deadline_is_enforced_with_the_runner_busy(serve: Serve, db: Database, make_user: Any) -> None:
    # one slot, taken by a long render
    server = serve(max_running_tasks=1, local_generation_seconds=60, deadline_sweep_seconds=0.1)
    user = await make_user(credits=100)
    runner = server.app.state.runner
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = await post(client, GENERATE, {"input": {**REQUEST, "deadlineSeconds": 600}}, key=user.key)
        busy = body["data"]["generateVideo"]["uuid"]
        await until_status(db, busy, S.GENERATING)
        body = await post(client, GENERATE, {"input": {**REQUEST, "deadlineSeconds": 600}}, key=user.key)
        queued = body["data"]["generateVideo"]["uuid"]
        # when the queued video's deadline passes while the runner has no room for it
        await past_deadline(db, queued)
        video = await until_status(db, queued, S.FAILED)
        assert video.failure_code is not None and video.failure_code.value == "DEADLINE_EXCEEDED"
        assert (await stored(db, busy)).status is S.GENERATING
        # and when the running one's deadline passes, the runner stops driving it at once
        await past_deadline(db, busy)
        await until_status(db, busy, S.FAILED)
        await eventually(lambda: runner.running == 0, "the runner to stop driving the expired video")
    audit = await audit_ledger(db, user.user_id)
    assert (audit.available, audit.frozen, audit.used, audit.tasks_left) == (100, 0, 0, 0)
    assert audit.holds == {HoldStatus.VOIDED: 2}
