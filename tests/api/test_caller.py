"""A request's key is verified once (api/caller.py): the rate limiter signs the caller in, and the
route takes the principal it left in the request's scope rather than verifying the key again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kensa_gql.app import create_app
from kensa_gql.services.accounts import Authenticator, Principal
from kensa_gql.settings import Settings

VIDEO_QUERY = "query Video($uuid: ID!) { video(uuid: $uuid) { uuid } }"
UNSEEN = "9b2f6a0e-4c1d-4e8a-9f3b-0a1b2c3d4e5f"


class Counting(Authenticator):
    """The app's authenticator, counting every verification of a key (cached or not)."""

    def __init__(self, inner: Authenticator) -> None:
        self.__dict__.update(inner.__dict__)
        self.verified = 0

    def known(self, key: str) -> Principal | None:
        self.verified += 1
        return super().known(key)

    async def authenticate(self, key: str | None) -> Principal:
        self.verified += 1
        return await super().authenticate(key)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Counting]]:
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60.0}), run_worker=False)
    async with app.router.lifespan_context(app):
        counting = app.state.authenticator = Counting(app.state.authenticator)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client, counting


@pytest.mark.parametrize("rate_limits", [True, False])
async def test_each_request_verifies_its_key_once(settings: Settings, make_user: Any, rate_limits: bool) -> None:
    user = await make_user(credits=10)
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60.0, "rate_limits": rate_limits}),
                     run_worker=False)
    async with app.router.lifespan_context(app):
        counting = app.state.authenticator = Counting(app.state.authenticator)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            await client.get("/api/v1/video/list", headers=user.headers)  # the key is remembered from here on
            for method, path, body in [("GET", f"/api/v1/video/{UNSEEN}", None),  # the front door's route
                                       ("GET", "/api/v1/video/list", None),         # one of Starlette's
                                       ("POST", "/graphql", {"query": VIDEO_QUERY, "variables": {"uuid": UNSEEN}})]:
                before = counting.verified
                r = await client.request(method, path, headers=user.headers, json=body)
                assert r.status_code in (200, 404), r.text
                assert counting.verified - before == 1, (method, path)


async def test_a_bad_key_is_still_refused_by_the_route(gateway: tuple[httpx.AsyncClient, Counting]) -> None:
    client, _ = gateway
    r = await client.get(f"/api/v1/video/{UNSEEN}", headers={"Authorization": "Bearer kgk_not_a_real_key_at_all"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
