"""Shared fixtures: a fresh database per test, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.app import create_app
from kensa_gql.services import accounts
from kensa_gql.settings import Settings
from tests.backends import PostgresDatabases
from tests.openapi_contract import ContractCheck

# The suite's clients send far more than any person would (fuzzers, floods, differential runs):
# rate limits stay on, so every response carries its headers, with budgets no test reaches.
# Tests of the limits set theirs explicitly (tests/api/test_rate_limits.py).
SUITE_BUDGETS = {f"KENSA_RATE_LIMIT_{name}_PER_MINUTE": "1000000000" for name in ("GENERATE", "REQUESTS", "ANONYMOUS")}
for _name, _value in SUITE_BUDGETS.items():
    os.environ.setdefault(_name, _value)

# Vendor emulators' fixtures (sample_video, emulator_for), for the provider tests.
pytest_plugins = ["tests.emulators.fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.close()


# Every test that touches the database runs on both backends: test ids end in [sqlite] / [postgres].
@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the backend under test (PostgreSQL ones come migrated)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/kensa.db"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, media_dir=tmp_path / "media",
                    local_generation_seconds=0.6, poll_interval_seconds=0.2, claim_interval_seconds=0.1,
                    lease_seconds=3.0, auth_cache_seconds=0.0)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, settings.database_url)
    database = Database(create_engine(settings.database_url))
    yield database
    await database.dispose()


class LiveServer:
    """uvicorn serving ``create_app(settings)`` in a thread with its own event loop."""

    def __init__(self, settings: Settings, *, run_worker: bool = True, public_url: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # public_url: what the gateway believes it is reachable at (e.g. https behind a proxy).
        self.app = create_app(settings.model_copy(update={"public_url": public_url or self.url}),
                              run_worker=run_worker)
        # Every REST response it sends is checked against the OpenAPI document (tests/openapi_contract.py).
        self.contract = ContractCheck(self.app)
        config = uvicorn.Config(self.contract, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        violations, self.contract.violations = self.contract.violations, []
        assert not violations, "responses the OpenAPI document does not admit:\n" + "\n".join(violations[:20])


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class User:
    email: str
    key: str
    user_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_user(db: Database) -> Any:
    counter = iter(range(1, 10_000))

    async def make(credits: int = 100, email: str | None = None) -> User:
        email = email or f"user{next(counter)}@example.test"
        principal, issued = await accounts.create_user(email, credits=credits, db=db)
        return User(email=email, key=issued.key, user_id=principal.user_id)

    return make


@pytest.fixture
async def client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as c:
        yield c


Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(settings: Settings) -> Iterator[Serve]:
    """Start live servers with ``settings`` changed by keyword (and with or without the runner)."""
    servers: list[LiveServer] = []

    def start(*, run_worker: bool = True, **overrides: Any) -> LiveServer:
        server = LiveServer(settings.model_copy(update=overrides), run_worker=run_worker)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
