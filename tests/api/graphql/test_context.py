"""One authentication per request, however many root fields ask for the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from starlette.applications import Starlette
from starlette.requests import Request

from kensa_gql.adapters.db.reads import Reads
from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.schema import build_schema
from kensa_gql.app import create_app
from kensa_gql.settings import Settings

THREE_ASKERS = "{ me { email } videos { total } again: me { email } }"


def context(app: Starlette, key: str) -> Context:
    scope = {"type": "http", "method": "POST", "path": "/graphql", "query_string": b"", "app": app,
             "headers": [(b"authorization", f"Bearer {key}".encode())]}
    return Context(Request(scope))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    assert settings.auth_cache_seconds == 0  # every authentication reaches the database
    application = create_app(settings, run_worker=False)
    async with application.router.lifespan_context(application):
        db = application.state.deps.db
        db.__dict__["reads"] = Reads(db.engine, db.reading, fast=False)  # lookups go through the pool
        yield application


async def test_root_fields_share_one_lookup(app: Starlette, settings: Settings, make_user: Any) -> None:
    user = await make_user(credits=5)
    lookups = 0

    def seen(*_args: object) -> None:
        nonlocal lookups
        lookups += 1

    pool = app.state.deps.db.engine.sync_engine.pool
    schema = build_schema(settings)
    event.listen(pool, "checkout", seen)
    try:
        result = await schema.execute("{ me { email } again: me { email } }", context_value=context(app, user.key))
    finally:
        event.remove(pool, "checkout", seen)
    assert not result.errors and result.data == {"me": {"email": user.email}, "again": {"email": user.email}}
    assert lookups == 1


async def test_a_bad_key_fails_every_asker_alike(app: Starlette, settings: Settings) -> None:
    schema = build_schema(settings)
    result = await schema.execute(THREE_ASKERS, context_value=context(app, "kg_" + "x" * 45))
    assert result.data is None or all(v is None for v in result.data.values())
    assert result.errors and {e.extensions["code"] for e in result.errors if e.extensions} == {"UNAUTHENTICATED"}
