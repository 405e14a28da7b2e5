"""Two transactions that deadlock on PostgreSQL: the one the server picks to fail is a 503 to try
again (UNAVAILABLE with Retry-After), never a 500."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kensa_gql.adapters.db.failures import driver_unavailable

# PostgreSQL only.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def test_the_loser_of_a_deadlock_is_unavailable_not_an_error(database_url: str) -> None:
    dsn = database_url.replace("postgresql+asyncpg", "postgresql")
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await first.execute("CREATE TABLE rows (id int PRIMARY KEY, n int); INSERT INTO rows VALUES (1, 0), (2, 0)")
        # given two transactions each holding one row, then each asking for the other's
        for conn, row in ((first, 1), (second, 2)):
            await conn.execute("BEGIN")
            await conn.execute("UPDATE rows SET n = n + 1 WHERE id = $1", row)
        outcomes = await asyncio.gather(first.execute("UPDATE rows SET n = n + 1 WHERE id = 2"),
                                        second.execute("UPDATE rows SET n = n + 1 WHERE id = 1"),
                                        return_exceptions=True)
        # then the server fails one of them as a deadlock, and that is a 503 with Retry-After
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], asyncpg.DeadlockDetectedError), outcomes
        translated = driver_unavailable(errors[0], lock_timeout=2.0)
        assert translated is not None and translated.code == "UNAVAILABLE" and translated.retry_after == 2
    finally:
        await first.close()
        await second.close()
