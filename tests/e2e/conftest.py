"""The gateway, served by uvicorn, driving vendor emulators that are served by uvicorn too."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from kensa_gql.adapters.db.database import Database
from kensa_gql.settings import Settings
from tests.conftest import LiveServer
from tests.e2e.gateway import Gateway, StartGateway
from tests.emulators.common import Emulator
from tests.emulators.fixtures import KEYS
from tests.emulators.server import EmulatorServer


@pytest.fixture
async def start_gateway(settings: Settings, db: Database,
                        emulator_for: Callable[[str], Emulator]) -> AsyncIterator[StartGateway]:
    """``await start_gateway(routes, vendors=[...], **settings)``: emulators up, then the gateway."""
    with contextlib.ExitStack() as stack:
        clients: list[httpx.AsyncClient] = []

        async def start(routes: dict[str, list[str]], *, vendors: list[str], public_url: str | None = None,
                        **overrides: Any) -> Gateway:
            emulators = {vendor: emulator_for(vendor) for vendor in vendors}
            update: dict[str, Any] = {"routes": routes, "poll_interval_seconds": 0.1, **overrides}
            for vendor, emulator in emulators.items():
                server = stack.enter_context(EmulatorServer(emulator.app()))
                update[f"{vendor}_api_key"] = SecretStr(KEYS[vendor])
                update[f"{vendor}_base_url"] = server.url
            live = LiveServer(settings.model_copy(update=update), public_url=public_url)
            live.start()
            stack.callback(live.stop)
            client = httpx.AsyncClient(base_url=live.url, timeout=30)
            clients.append(client)
            return Gateway(url=live.url, client=client, emulators=emulators, db=db)

        try:
            yield start
        finally:
            for client in clients:
                await client.aclose()
