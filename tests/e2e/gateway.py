"""A running gateway as the end-to-end tests see it, and what they check on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kensa_gql.adapters.db.database import Database
from kensa_gql.domain.ledger import Balance
from kensa_gql.services import accounts
from tests.conftest import User
from tests.emulators.common import Emulator
from tests.emulators.fixtures import KEYS


@dataclass
class Gateway:
    url: str
    client: httpx.AsyncClient
    emulators: dict[str, Emulator]
    db: Database

    async def generate(self, user: User, **request: Any) -> str:
        r = await self.client.post("/api/v1/video/generate", json=request, headers=user.headers)
        assert r.status_code == 200, r.text
        uuid: str = r.json()["data"]["uuid"]
        return uuid

    async def balance(self, user: User) -> Balance:
        return await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=self.db)

    async def history(self, user: User, uuid: str) -> list[str]:
        r = await self.client.get("/api/v1/credit/history", params={"pageSize": 100}, headers=user.headers)
        return sorted(t["transType"] for t in r.json()["data"]["transactions"] if t["videoUuid"] == uuid)


def key_free(text: str) -> bool:
    return not any(key in text for key in KEYS.values())


StartGateway = Callable[..., Awaitable[Gateway]]
