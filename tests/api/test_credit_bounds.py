"""Credits enter bounded: no stored amount or balance can pass what GraphQL Int renders (2**31 - 1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.tables import credit_entries, users
from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.ledger import MAX_CREDITS, PackageType
from kensa_gql.services import accounts
from tests.api.graphql.wire import post

ME = "query { me { credits { available frozen used total } } }"
HISTORY = "query { creditHistory(page: 1, pageSize: 10) { transactions { credits balanceAfter } } }"


async def counts(db: Database) -> tuple[int, int]:
    async with db.reading() as uow:
        people = (await uow.conn.execute(select(func.count()).select_from(users))).scalar_one()
        entries = (await uow.conn.execute(select(func.count()).select_from(credit_entries))).scalar_one()
    return int(people), int(entries)


async def test_a_grant_past_the_bound_is_refused_and_writes_nothing(db: Database) -> None:
    principal, _ = await accounts.create_user("big@example.test", credits=MAX_CREDITS - 10, db=db)
    before = await counts(db)
    for kind in PackageType:
        with pytest.raises(BadUserInput, match="can receive at most 10 more") as refused:
            await accounts.grant_credits("big@example.test", 11, kind=kind, db=db)
        assert refused.value.field == "credits"
    assert await counts(db) == before
    await accounts.grant_credits("big@example.test", 10, db=db)
    assert (await accounts.get_balance(principal, db=db)).total == MAX_CREDITS


@pytest.mark.parametrize("credits", [MAX_CREDITS + 1, 3_000_000_000, 2**63])
async def test_a_user_created_with_too_many_credits_is_not_created(db: Database, credits: int) -> None:
    with pytest.raises(BadUserInput, match=f"at most {MAX_CREDITS} credits"):
        await accounts.create_user("huge@example.test", credits=credits, db=db)
    assert await counts(db) == (0, 0)


async def test_the_largest_balance_renders_over_graphql_and_rest(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=MAX_CREDITS)
    me = await post(client, ME, {}, key=user.key)
    assert me == {"data": {"me": {"credits": {"available": MAX_CREDITS, "frozen": 0, "used": 0,
                                              "total": MAX_CREDITS}}}}
    history = await post(client, HISTORY, {}, key=user.key)
    assert history == {"data": {"creditHistory": {"transactions": [{"credits": MAX_CREDITS,
                                                                     "balanceAfter": MAX_CREDITS}]}}}
    rest = (await client.get("/api/v1/credit/history", headers=user.headers)).json()
    assert rest["success"] and rest["data"]["transactions"][0]["balanceAfter"] == MAX_CREDITS
