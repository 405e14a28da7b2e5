"""The app in the test's own event loop, with a user and a video of theirs (tests/api/graphql)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kensa_gql.app import create_app
from kensa_gql.services import videos
from kensa_gql.settings import Settings
from tests.api.graphql.asgi_sockets import REQUEST, Gateway


@pytest.fixture
async def gateway(settings: Settings, make_user: Any) -> AsyncIterator[Gateway]:
    # A short wait for connection_init: every other test sends it at once.
    # The user is made before the app starts: its background sweeps then never race this second
    # engine's first writes to the fresh SQLite file (once seen as a 503 "locked by another writer").
    user = await make_user(credits=10)
    app = create_app(settings.model_copy(update={"graphql_connection_init_timeout_seconds": 0.3}), run_worker=False)
    async with app.router.lifespan_context(app):
        principal = await app.state.authenticator.authenticate(user.key)
        made = await videos.generate_video(REQUEST, principal, deps=app.state.deps)
        yield Gateway(app, user.key, made.video.uuid)
