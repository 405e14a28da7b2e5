"""``python -m bench.logging_cost [--database sqlite|postgres]``: what the request log costs.

Three gateways on one seeded database, all pinned to core 0 like the rest of the bench: request
log off (``KENSA_LOG_LEVEL=WARNING``), on in the text format, on in the JSON format (``INFO``, the
default; lines go to a file, as under a process manager). Each round reads ``GET
/api/v1/video/{uuid}`` from each in turn; a format's ratio is its req/s over the log-off gateway's
in the same round, the median over rounds is reported (issue 16's target: >= 0.85).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import load, seed, throughput
from bench.servers import Server, gateway_argv, running

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET = 0.85
UNLIMITED = 1_000_000_000  # per minute: the most KENSA_RATE_LIMIT_* take (as in bench/__main__.py)


def _postgres_copy(seeded: seed.Seeded, name: str) -> str:
    """The seeded SQLite database's users, keys and videos copied into a new PostgreSQL database."""
    import asyncpg
    import sqlalchemy

    from kensa_gql.adapters.db.migrate import upgrade

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    source = sqlalchemy.create_engine(seeded.url.replace("+aiosqlite", ""))

    async def copy() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            with source.connect() as src:
                for table in ("users", "api_keys", "credit_accounts", "credit_packages", "credit_entries", "videos"):
                    rows = src.execute(sqlalchemy.text(f"SELECT * FROM {table}")).mappings().all()
                    if not rows:
                        continue
                    columns = list(rows[0].keys())
                    await conn.copy_records_to_table(table, records=[tuple(r[c] for c in columns) for r in rows],
                                                     columns=columns)
                    if "id" in columns:
                        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                           f"(SELECT max(id) FROM {table}))")
        finally:
            await conn.close()

    asyncio.run(copy())
    return url


def _drop(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def _access_lines(path: Path) -> tuple[int, bool]:
    """How many access lines a server's log holds, and whether their times never go back."""
    count, last, ordered = 0, "", True
    with path.open(errors="replace") as log:
        for line in log:
            if "kensa_gql.access" not in line:
                continue
            stamp = line[9:33] if line.startswith('{"time":"') else line[:24]  # JSON, text
            count += 1
            ordered = ordered and stamp >= last
            last = stamp
    return count, ordered


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.logging_cost", description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (databases, logs)")
    args = parser.parse_args(argv)
    tool = "wrk" if args.load == "wrk" or (args.load == "auto" and load.wrk_available()) else "python"
    workdir = Path(tempfile.mkdtemp(prefix="kensa-logbench-"))
    try:
        seeded = seed.seed(workdir, "reads.db", videos=args.videos)
        url = seeded.url if args.database == "sqlite" else _postgres_copy(seeded, f"kensa_logbench_{workdir.name[-8:]}")
        # Rate limits on (the default), with budgets no bench load reaches: at the default 1,200 a
        # minute per key nearly every read would be a 429, and the figure would time refusals.
        env = {"KENSA_MEDIA_DIR": str(workdir / "media"), "KENSA_DATABASE_URL": url, "KENSA_RATE_LIMITS": "true",
               "KENSA_RATE_LIMIT_GENERATE_PER_MINUTE": str(UNLIMITED),
               "KENSA_RATE_LIMIT_REQUESTS_PER_MINUTE": str(UNLIMITED),
               "KENSA_RATE_LIMIT_ANONYMOUS_PER_MINUTE": str(UNLIMITED)}
        servers = {
            "off": Server("log-off", gateway_argv(), env={**env, "KENSA_LOG_LEVEL": "WARNING"}, log_dir=workdir),
            "text": Server("log-text", gateway_argv(), env={**env, "KENSA_LOG_LEVEL": "INFO",
                                                            "KENSA_LOG_FORMAT": "text"}, log_dir=workdir),
            "json": Server("log-json", gateway_argv(), env={**env, "KENSA_LOG_LEVEL": "INFO",
                                                            "KENSA_LOG_FORMAT": "json"}, log_dir=workdir),
        }
        rest = load.Target("GET", "/api/v1/video/", {"Authorization": f"Bearer {seeded.key}"},
                           paths=[f"/api/v1/video/{u}" for u in seeded.readable])
        figures = [throughput.HttpFigure(f"rest-read-log-{name}", name, rest, 64, "" if name == "off" else
                                         "rest-read-log-off", what=f"REST read, request log {name}")
                   for name in reversed(servers)]
        print(f"logging cost on {args.database}: {args.rounds} round(s) x {args.duration:g} s, load {tool}",
              flush=True)
        with running(*servers.values()):
            results = throughput.run_rounds(figures, servers, rounds=args.rounds, duration=args.duration,
                                            warmup=1.0, tool=tool, workdir=workdir, log=print)
        # (the servers have stopped: whatever they had queued is written)
        lines = {name: sum(1 for _ in (workdir / f"log-{name}.log").open()) for name in ("text", "json")}
        access = {name: _access_lines(workdir / f"log-{name}.log") for name in ("text", "json")}
        off = results["rest-read-log-off"]
        summary = {"database": args.database, "rps_off": off["rps"]["median"], "lines_written": lines,
                   "non2xx": {name: results[f"rest-read-log-{name}"]["non2xx"] for name in servers},
                   # every answered request has its line (a few more: requests in flight when wrk stopped)
                   "answered": {name: results[f"rest-read-log-{name}"]["accepted"] for name in ("text", "json")},
                   "access_lines": {name: count for name, (count, _) in access.items()},
                   "in_order": {name: ordered for name, (_, ordered) in access.items()}}
        for name in ("text", "json"):
            entry = results[f"rest-read-log-{name}"]
            ratios = entry["per_round_ratio"]
            summary[name] = {"rps": entry["rps"]["median"], "ratio": round(statistics.median(ratios), 3),
                             "per_round_ratio": [round(r, 3) for r in ratios],
                             "cpu_ratio": round(entry["cpu_ratio"]["median"], 3)}
        print(json.dumps(summary, indent=1))
        ok = all(summary[name]["ratio"] >= TARGET for name in ("text", "json"))  # type: ignore[index]
        if any(summary["non2xx"].values()):  # type: ignore[attr-defined]
            print("some reads were refused or failed (non2xx): the figure does not time reads alone")
            ok = False
        for name, (count, ordered) in access.items():
            answered = results[f"rest-read-log-{name}"]["accepted"]
            if count < answered or not ordered:
                print(f"log {name}: {count} access lines for {answered} answered requests, "
                      f"{'in order' if ordered else 'OUT OF ORDER'}")
                ok = False
        print(f"target (>= {TARGET} of log off): {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        if args.database == "postgres":
            _drop(f"kensa_logbench_{workdir.name[-8:]}")
        if args.keep:
            print(f"scratch kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
