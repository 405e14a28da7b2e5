"""After the generate figure: is the ledger exact? Read straight from the database file."""

from __future__ import annotations

import sqlite3
from typing import Any


def check(url: str, *, accepted_at_least: int, in_flight_at_most: int, price: int) -> dict[str, Any]:
    """Every accepted request froze exactly ``price`` once, and every package still adds up."""
    conn = sqlite3.connect(url.split("///", 1)[1])
    try:
        one = lambda sql: conn.execute(sql).fetchone()  # noqa: E731
        videos, credits_used = one("SELECT count(*), coalesce(sum(credits_used), 0) FROM videos")
        holds, held = one("SELECT count(*), coalesce(sum(amount), 0) FROM credit_holds WHERE status = 'PENDING'")
        all_holds = one("SELECT count(*) FROM credit_holds")[0]
        tasks = one("SELECT count(*) FROM tasks")[0]
        freezes, frozen_by_entries = one(
            "SELECT count(*), coalesce(-sum(credits), 0) FROM credit_entries WHERE type = 'VIDEO_CONSUME'")
        granted = one("SELECT coalesce(sum(credits), 0) FROM credit_entries "
                      "WHERE type IN ('GIFT', 'PURCHASE', 'SUBSCRIPTION')")[0]
        amount, remaining, frozen, used, expired = one(
            "SELECT sum(amount), sum(remaining), sum(frozen), sum(used), sum(expired) FROM credit_packages")
        broken_packages = one("SELECT count(*) FROM credit_packages "
                              "WHERE remaining + frozen + used + expired != amount")[0]
        last_balance = one("SELECT balance_after FROM credit_entries ORDER BY id DESC LIMIT 1")[0]
        duplicate_trans = one("SELECT count(*) - count(DISTINCT trans_no) FROM credit_entries")[0]
    finally:
        conn.close()
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
    if last_balance != remaining:
        problems.append(f"last balanceAfter {last_balance} != available {remaining}")
    if duplicate_trans:
        problems.append(f"{duplicate_trans} duplicate transaction numbers")
    if not accepted_at_least <= videos <= accepted_at_least + in_flight_at_most:
        problems.append(f"{videos} videos for {accepted_at_least} accepted responses "
                        f"(+ at most {in_flight_at_most} in flight)")
    return {"exact": not problems, "problems": problems, "videos": videos, "accepted_responses": accepted_at_least,
            "frozen": frozen, "available": remaining, "granted": granted, "price": price}
