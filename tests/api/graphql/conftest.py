"""Fixtures for GraphQL tests: live servers with adjusted settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kensa_gql.settings import Settings
from tests.conftest import LiveServer

Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(settings: Settings) -> Iterator[Serve]:
    """Start a live server with ``settings`` changed by keyword; stopped after the test."""
    servers: list[LiveServer] = []

    def start(*, run_worker: bool = True, **overrides: Any) -> LiveServer:
        server = LiveServer(settings.model_copy(update=overrides), run_worker=run_worker)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
