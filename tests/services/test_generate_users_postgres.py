"""On PostgreSQL one user's generates queue on their account lock, and another user's do not."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.services import accounts
from kensa_gql.services.accounts import Principal
from kensa_gql.services.videos import generate_video
from tests.services.test_live_video_counts import REQUEST, make_deps

# PostgreSQL only: SQLite has one writer by design.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def test_a_users_locked_account_holds_up_their_generates_only(db: Database, database_url: str) -> None:
    deps = make_deps(db)
    a = (await accounts.create_user("a@example.test", credits=100, db=db))[0]
    b = (await accounts.create_user("b@example.test", credits=100, db=db))[0]
    holder = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        # given another session holds user A's account row, as a ledger operation of A's does...
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE", a.user_id)
        waiting = asyncio.create_task(generate_video(REQUEST, Principal(a.user_id, a.email), deps=deps))
        # ...when user B generates, B's video is accepted while A's generate still waits
        made = await asyncio.wait_for(generate_video(REQUEST, Principal(b.user_id, b.email), deps=deps), 30)
        assert made.video.user_id == b.user_id
        assert not waiting.done()
        await lock.rollback()
    finally:
        await holder.close()
    # and once the lock is gone A's generate goes through
    assert (await asyncio.wait_for(waiting, 30)).video.user_id == a.user_id
