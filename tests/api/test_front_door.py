"""The front door (api/frontdoor.py) answers exactly as Starlette's routes do.

Every request goes to two live servers on one database: the gateway as built, and the same
gateway without its front door, so every answer there comes from Starlette's router. Status,
headers and body must be the same (request ids aside, which are random unless the client sends
one, and each server's own address).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from kensa_gql.adapters.db.database import Database
from kensa_gql.api.frontdoor import FrontDoor
from kensa_gql.app import create_app
from kensa_gql.settings import Settings
from tests.conftest import LiveServer, User

GENERATE = {"prompt": "a lighthouse in a storm", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
VIDEO_QUERY = "query Video($uuid: ID!) { video(uuid: $uuid) { uuid status progress creditsUsed } }"
UNSEEN = "9b2f6a0e-4c1d-4e8a-9f3b-0a1b2c3d4e5f"  # a well-formed uuid nobody has


def without_front_door(app: Starlette) -> Starlette:
    """The gateway as it was before the front door: every request through Starlette's router."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FrontDoor]
    return app


@dataclass
class Pair:
    front: LiveServer
    plain: LiveServer

    async def both(self, method: str, target: str, *, headers: Any = None,
                   content: bytes | None = None) -> tuple[httpx.Response, httpx.Response]:
        """The same request, byte for byte (``target`` is sent as written), to both servers."""
        answers = []
        for server in (self.front, self.plain):
            async with httpx.AsyncClient(base_url=server.url) as client:
                request = client.build_request(method, "/", headers=headers, content=content,
                                               extensions={"target": target.encode()})
                answers.append(await client.send(request))
        return answers[0], answers[1]

    async def same(self, method: str, target: str, *, headers: Any = None, content: bytes | None = None,
                   request_id: str | None = None) -> httpx.Response:
        """Both answers must match; returns the front door's."""
        front, plain = await self.both(method, target, headers=headers, content=content)
        assert (front.status_code, self._headers(front, self.front), self._body(front, self.front)) == (
            plain.status_code, self._headers(plain, self.plain), self._body(plain, self.plain)), (method, target)
        for r in (front, plain):
            assert r.headers["x-request-id"] == request_id if request_id else REQUEST_ID.match(
                r.headers["x-request-id"])
        return front

    @staticmethod
    def _headers(r: httpx.Response, server: LiveServer) -> list[tuple[str, str]]:
        # uvicorn's date header ticks every second; the request id is compared by `same`; each
        # server counts its own rate limit budget (the RateLimit header's remaining and reset).
        return [(k, v.replace(server.url, "BASE")) for k, v in r.headers.multi_items()
                if k not in ("date", "x-request-id", "ratelimit")]

    @staticmethod
    def _body(r: httpx.Response, server: LiveServer) -> bytes:
        return r.content.replace(server.url.encode(), b"BASE")


def pair_of(settings: Settings) -> Iterator[Pair]:
    front = LiveServer(settings, run_worker=False)
    plain = LiveServer(settings, run_worker=False)
    without_front_door(plain.app)
    front.start()
    plain.start()
    try:
        yield Pair(front, plain)
    finally:
        front.stop()
        plain.stop()


@pytest.fixture
def pair(settings: Settings) -> Iterator[Pair]:
    yield from pair_of(settings)


@pytest.fixture
def cors_pair(settings: Settings) -> Iterator[Pair]:
    yield from pair_of(settings.model_copy(update={"cors_origins": ["https://app.example"]}))


async def generated(server: LiveServer, user: User) -> str:
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
    assert r.status_code == 200
    uuid: str = r.json()["data"]["uuid"]
    return uuid


async def test_video_reads_answer_the_same_with_and_without_the_front_door(pair: Pair, make_user: Any) -> None:
    # given: a video, another user's video and a deleted one
    owner, other = await make_user(credits=20), await make_user(credits=20)
    mine, foreign, deleted = (await generated(pair.front, owner), await generated(pair.front, other),
                              await generated(pair.front, owner))
    async with httpx.AsyncClient(base_url=pair.plain.url) as client:
        assert (await client.delete(f"/api/v1/video/{deleted}", headers=owner.headers)).status_code == 200
    auth = owner.headers

    # then: reads of every kind match, with and without a request id of the client's
    ok = await pair.same("GET", f"/api/v1/video/{mine}", headers=auth)
    assert ok.status_code == 200 and ok.json()["data"]["uuid"] == mine
    assert ok.headers["content-type"] == "application/json"
    await pair.same("GET", f"/api/v1/video/{mine}", headers={**auth, "x-request-id": "client-id-0001"},
                    request_id="client-id-0001")
    await pair.same("GET", f"/api/v1/video/{mine}", headers={**auth, "x-request-id": "bad id!"})
    await pair.same("GET", f"/api/v1/video/{mine}?fields=all&x=%20", headers=auth)
    for uuid in (UNSEEN, foreign, deleted, mine.upper(), mine.replace("-", ""), f"{{{mine}}}", "not-a-uuid",
                 "Generate", "LIST"):
        assert (await pair.same("GET", f"/api/v1/video/{uuid}", headers=auth)).status_code in (200, 404)
    await pair.same("GET", f"/api/v1/video/{mine}", headers={**auth, "authorization": "bearer " + owner.key})

    # and: keys that are missing, malformed, unknown, of another scheme, or given twice
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Bearer kg_" + "x" * 43},
                    {"authorization": "Basic " + owner.key}, {"authorization": "Bearer"}):
        assert (await pair.same("GET", f"/api/v1/video/{mine}", headers=headers)).status_code == 401
    await pair.same("GET", f"/api/v1/video/{mine}",
                    headers=[("authorization", "Bearer nope"), ("authorization", auth["Authorization"])])
    await pair.same("GET", f"/api/v1/video/{mine}",
                    headers=[("authorization", auth["Authorization"]), ("authorization", "Bearer nope")])


async def test_other_methods_and_paths_answer_the_same(pair: Pair, make_user: Any) -> None:
    owner = await make_user(credits=20)
    mine = await generated(pair.front, owner)
    auth = owner.headers
    # Wrong methods: 405 with the same Allow header; HEAD is GET without a body; DELETE its own route.
    for method in ("POST", "PUT", "PATCH", "OPTIONS", "HEAD"):
        await pair.same(method, f"/api/v1/video/{mine}", headers=auth, content=b"{}")
    await pair.same("DELETE", f"/api/v1/video/{UNSEEN}", headers=auth)
    await pair.same("DELETE", f"/api/v1/video/{mine}")
    # Fixed names, trailing slashes, encodings, neighbours of the path.
    for target in ("/api/v1/video/generate", "/api/v1/video/list", "/api/v1/video/task",
                   "/api/v1/video/task?uuid=" + mine, f"/api/v1/video/{mine}/", "/api/v1/video/",
                   "/api/v1/video", f"/api/v1/video//{mine}", f"/api/v1/VIDEO/{mine}", f"/api/v1//video/{mine}",
                   f"/api/v1/video/%{ord(mine[0]):02X}{mine[1:]}", f"/api/v1/video/{mine[:8]}%2F{mine[9:]}",
                   f"/api/v1/video/{mine}%0A", f"/api/v1/video/{mine}%20", "/api/v1/video/%C3%A9t%C3%A9",
                   "/api/v1/video/.", "/api/v1/video/..", f"/api/v1/video/{mine}/extra",
                   f"/api/v2/video/{mine}", f"/api/v1/video/{mine};x", "/api/v1/config/models", "/healthz"):
        await pair.same("GET", target, headers=auth)
    # GraphQL: POST with a good, a bad and no document; GET and other methods stay Starlette's.
    query = json.dumps({"query": VIDEO_QUERY, "variables": {"uuid": mine}}).encode()
    json_type = {**auth, "content-type": "application/json"}
    assert (await pair.same("POST", "/graphql", headers=json_type, content=query)).json()["data"]["video"][
        "uuid"] == mine
    await pair.same("POST", "/graphql", headers={"content-type": "application/json"}, content=query)
    too_large = json.dumps({"query": "{ __typename }", "pad": "x" * 200_000}).encode()
    for body in (b"{not json", b"{}", b'{"query": "{ nope }"}', b"[]", too_large):
        await pair.same("POST", "/graphql", headers=json_type, content=body)
    await pair.same("POST", "/graphql", headers={**auth, "content-type": "text/plain"}, content=query)
    await pair.same("POST", "/graphql/", headers=json_type, content=query)
    await pair.same("POST", "/graphql?x=1", headers=json_type, content=query)
    await pair.same("PUT", "/graphql", headers=json_type, content=query)


async def test_cors_answers_the_same_through_the_front_door(cors_pair: Pair, make_user: Any) -> None:
    owner = await make_user(credits=20)
    mine = await generated(cors_pair.front, owner)
    origin = {"origin": "https://app.example"}
    r = await cors_pair.same("GET", f"/api/v1/video/{mine}", headers={**owner.headers, **origin})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    await cors_pair.same("GET", f"/api/v1/video/{UNSEEN}", headers={**owner.headers, **origin})
    await cors_pair.same("GET", f"/api/v1/video/{mine}", headers={**owner.headers, "origin": "https://evil.example"})
    await cors_pair.same("OPTIONS", f"/api/v1/video/{mine}",
                         headers={**origin, "access-control-request-method": "GET",
                                  "access-control-request-headers": "authorization"})
    query = json.dumps({"query": VIDEO_QUERY, "variables": {"uuid": mine}}).encode()
    await cors_pair.same("POST", "/graphql", headers={**owner.headers, **origin, "content-type": "application/json"},
                         content=query)


async def test_an_unexpected_error_on_the_front_door_is_the_same_500_logged_once(
        pair: Pair, make_user: Any, db: Database, caplog: pytest.LogCaptureFixture) -> None:
    # given: a key that works and a database that has lost its videos table
    owner = await make_user(credits=20)
    async with db.writing() as uow:
        await uow.conn.execute(text("ALTER TABLE videos RENAME TO videos_gone"))
        await uow.commit()
    # when
    with caplog.at_level(logging.INFO):
        front, plain = await pair.both("GET", f"/api/v1/video/{UNSEEN}", headers=owner.headers)
    # then: the masked envelope from both, each logged once as an error with its request id
    for r in (front, plain):
        assert r.status_code == 500 and r.json() == {
            "success": False, "error": {"code": "INTERNAL_SERVER_ERROR", "message": "internal server error"}}
    assert front.content == plain.content
    assert [k for k, _ in front.headers.multi_items()] == [k for k, _ in plain.headers.multi_items()]
    for r in (front, plain):
        request_id = r.headers["x-request-id"]
        logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == request_id]
        assert [rec.levelno for rec in logged] == [logging.ERROR, logging.INFO]
        assert logged[0].exc_info and logged[1].status == 500  # type: ignore[attr-defined]


async def test_the_front_door_logs_one_access_line_per_request(
        pair: Pair, make_user: Any, caplog: pytest.LogCaptureFixture) -> None:
    owner = await make_user(credits=20)
    mine = await generated(pair.front, owner)
    answers = []
    with caplog.at_level(logging.INFO):
        for uuid, status in ((mine, 200), (UNSEEN, 404)):
            path = f"/api/v1/video/{uuid}"
            answers += [(r, path, status) for r in await pair.both("GET", path, headers=owner.headers)]
    for r, path, status in answers:
        lines: list[Any] = [rec for rec in caplog.records if rec.name == "kensa_gql.access"
                            and getattr(rec, "request_id", None) == r.headers["x-request-id"]]
        assert len(lines) == 1
        line = lines[0]
        assert (line.method, line.path, line.status, line.duration_ms >= 0) == ("GET", path, status, True)
        assert owner.key not in line.getMessage()


@pytest.fixture
async def routerless(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The gateway with the video and GraphQL routes taken out of Starlette's router: what still
    answers there can only have come through the front door."""
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def test_the_hottest_routes_really_take_the_front_door(
        routerless: tuple[Starlette, httpx.AsyncClient], make_user: Any) -> None:
    app, client = routerless
    owner = await make_user(credits=20)
    uuid = (await client.post("/api/v1/video/generate", json=GENERATE, headers=owner.headers)).json()["data"]["uuid"]
    app.router.routes[:] = [r for r in app.router.routes
                            if not isinstance(r, Mount) and not (isinstance(r, Route) and r.path == "/graphql")]
    r = await client.get(f"/api/v1/video/{uuid}", headers=owner.headers)
    assert r.status_code == 200 and r.json()["data"]["uuid"] == uuid
    assert (await client.get(f"/api/v1/video/{UNSEEN}", headers=owner.headers)).json()["error"]["code"] == "NOT_FOUND"
    r = await client.post("/graphql", json={"query": VIDEO_QUERY, "variables": {"uuid": uuid}}, headers=owner.headers)
    assert r.status_code == 200 and r.json()["data"]["video"]["uuid"] == uuid
    # Not the front door's: Starlette's router, now without those routes.
    assert (await client.get("/api/v1/video/list", headers=owner.headers)).status_code == 404
    assert (await client.head(f"/api/v1/video/{uuid}", headers=owner.headers)).status_code == 404
    assert (await client.get("/graphql")).status_code == 404


async def test_a_root_path_takes_starlettes_way_with_the_same_answers(settings: Settings, make_user: Any) -> None:
    owner = await make_user(credits=20)
    front, plain = create_app(settings, run_worker=False), without_front_door(create_app(settings, run_worker=False))
    answers = []
    async with front.router.lifespan_context(front), plain.router.lifespan_context(plain):
        for app in (front, plain):
            transport = httpx.ASGITransport(app=app, root_path="/gw")
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                uuid = (await client.post("/gw/api/v1/video/generate", json=GENERATE,
                                          headers=owner.headers)).json()["data"]["uuid"]
                r = await client.get(f"/gw/api/v1/video/{uuid}", headers=owner.headers)
                missing = await client.get(f"/gw/api/v1/video/{UNSEEN}", headers=owner.headers)
                answers.append((r.status_code, r.json()["data"]["uuid"] == uuid, missing.status_code, missing.content))
    assert answers[0] == answers[1] and answers[0][:3] == (200, True, 404)
