"""After the generate figure: is the ledger exact? Read straight from the database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

QUERIES = {
    "videos": "SELECT count(*), coalesce(sum(credits_used), 0) FROM videos",
    "holds": "SELECT count(*), coalesce(sum(amount), 0) FROM credit_holds WHERE status = 'PENDING'",
    "all_holds": "SELECT count(*) FROM credit_holds",
    "tasks": "SELECT count(*) FROM tasks",
    "freezes": "SELECT count(*), coalesce(-sum(credits), 0) FROM credit_entries WHERE type = 'VIDEO_CONSUME'",
    "granted": ("SELECT coalesce(sum(credits), 0) FROM credit_entries "
                "WHERE type IN ('GIFT', 'PURCHASE', 'SUBSCRIPTION')"),
    "packages": "SELECT sum(amount), sum(remaining), sum(frozen), sum(used), sum(expired) FROM credit_packages",
    "broken": "SELECT count(*) FROM credit_packages WHERE remaining + frozen + used + expired != amount",
    # Users whose last entry's balance is not what their packages hold now (a user's entries are
    # written under their account lock, so the highest id is the latest).
    "balance_mismatch": "SELECT count(*) FROM (SELECT user_id, sum(remaining) AS available FROM credit_packages "
                        "GROUP BY user_id) AS a WHERE a.available != (SELECT balance_after FROM credit_entries "
                        "WHERE credit_entries.user_id = a.user_id ORDER BY id DESC LIMIT 1)",
    "duplicate_trans": "SELECT count(*) - count(DISTINCT trans_no) FROM credit_entries",
}


def _answers(url: str) -> dict[str, tuple[int, ...]]:
    """Every query's first row, as integers (PostgreSQL sums bigints to numeric)."""
    as_ints: Callable[[Any], tuple[int, ...]] = lambda row: tuple(int(v) for v in row)  # noqa: E731
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        try:
            return {k: as_ints(conn.execute(sql).fetchone()) for k, sql in QUERIES.items()}
        finally:
            conn.close()

    async def read() -> dict[str, tuple[int, ...]]:
        parts = urlsplit(url)
        pg = await asyncpg.connect(urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, "")))
        try:
            return {k: as_ints(await pg.fetchrow(sql)) for k, sql in QUERIES.items()}
        finally:
            await pg.close()

    return asyncio.run(read())


def check(url: str, *, accepted_at_least: int, in_flight_at_most: int, price: int) -> dict[str, Any]:
    """Every accepted request froze exactly ``price`` once, and every package still adds up."""
    a = _answers(url)
    videos, credits_used = a["videos"]
    holds, held = a["holds"]
    (all_holds,), (tasks,), (granted,) = a["all_holds"], a["tasks"], a["granted"]
    freezes, frozen_by_entries = a["freezes"]
    amount, remaining, frozen, used, expired = a["packages"]
    (broken_packages,), (mismatch,), (duplicate_trans,) = a["broken"], a["balance_mismatch"], a["duplicate_trans"]
    problems = []
    if not videos == holds == all_holds == tasks == freezes:
        problems.append(f"videos {videos}, holds {holds}/{all_holds}, tasks {tasks}, freeze entries {freezes} differ")
    if not held == frozen == frozen_by_entries == credits_used == videos * price:
        problems.append(f"held {held}, packages frozen {frozen}, frozen by entries {frozen_by_entries}, "
                        f"credits used {credits_used}, {videos} x {price} differ")
    if broken_packages:
        problems.append(f"{broken_packages} packages do not add up")
    if amount != granted or remaining + frozen + used + expired != granted:
        problems.append(f"granted {granted} != packages {amount}")
    if mismatch:
        problems.append(f"{mismatch} users' last balanceAfter != their available credits")
    if duplicate_trans:
        problems.append(f"{duplicate_trans} duplicate transaction numbers")
    if not accepted_at_least <= videos <= accepted_at_least + in_flight_at_most:
        problems.append(f"{videos} videos for {accepted_at_least} accepted responses "
                        f"(+ at most {in_flight_at_most} in flight)")
    return {"exact": not problems, "problems": problems, "videos": videos, "accepted_responses": accepted_at_least,
            "frozen": frozen, "available": remaining, "granted": granted, "price": price}
