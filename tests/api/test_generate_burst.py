"""A burst of generates never overspends, on either backend; the ledger stays exact."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from kensa_gql.adapters.db.database import Database
from tests.audit import audit_ledger

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
COVERED = 5   # a 4-second 720p sora-2 video costs 1 credit
BURST = 16


async def test_concurrent_generates_accept_exactly_what_the_balance_covers(
        client: httpx.AsyncClient, make_user: Any, db: Database) -> None:
    user = await make_user(credits=COVERED)
    responses = await asyncio.gather(*(
        client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers) for _ in range(BURST)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * COVERED + [402] * (BURST - COVERED), [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 402).json()
    assert refused["error"]["code"] == "INSUFFICIENT_CREDITS"
    audit = await audit_ledger(db, user.user_id)
    assert audit.available == 0
    assert audit.frozen + audit.used == COVERED
    assert sum(audit.statuses.values()) == COVERED
