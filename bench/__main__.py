"""``python -m bench [figure ...] [--database sqlite|postgres] [--quick] [--subscribers N] ...``: the benchmark suite.

Prints every figure as min / median / max with its ratio to the baseline measured in the same
run, and writes them to ``bench/results/<date>.json``. On PostgreSQL every figure is also given
against the PostgreSQL floor (a bare asyncpg ``fetchrow`` endpoint) of the same rounds, and the
generate figure against SQLite's generate of the same rounds. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fanout, idle, ledger_check, load, seed, throughput
from bench.servers import ROOT, Server, gateway_argv, pinning_possible, running, uvicorn_argv
from kensa_gql.domain.ledger import MAX_CREDITS

FIGURES = ("baseline", "rest-read", "graphql-read", "graphql-list", "generate", "latency", "fanout",
           "fanout-replicas", "idle-streams")
# idle-streams: memory per idle SSE stream beside per idle WebSocket subscriber (bench/idle.py).
# fanout-replicas: the subscribers over two gateway processes fed by Redis, beside one process.
REDIS_URL = os.environ.get("KENSA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
GRAPHQL_FIGURES = {"graphql-read", "graphql-list"}
PRICE = 2  # sora-2, 10 s, 720p: what every generate request costs
# The generate figure's requests come from this many users at random: one user's requests queue on
# their account's lock (by design); different users' must not.
GENERATE_USERS = 16

READ_QUERY = ("query Video($uuid: ID!) { video(uuid: $uuid) { uuid status progress videoUrl creditsUsed } }")
GENERATE_MUTATION = ("mutation Generate($input: GenerateVideoInput!) "
                     "{ generateVideo(input: $input) { uuid status creditsUsed } }")
GENERATE_INPUT = {"prompt": "A paper boat drifting down a rain-soaked street, close-up", "model": "sora-2",
                  "duration": 10, "aspectRatio": "16:9"}

# figure -> (what is compared, how, the target)
TARGETS: dict[str, tuple[str, str, float]] = {
    "rest-read": ("ratio", ">=", 0.50),
    "graphql-read": ("ratio", ">=", 0.36),
    "graphql-list": ("ratio", ">=", 0.18),
    "rest-read@16": ("p99_ms", "<=", 25.0),
    "graphql-read@16": ("p99_ms", "<=", 25.0),
}
# PostgreSQL: the reads against the floor, generate against SQLite's generate of the same rounds.
PG_TARGETS: dict[str, tuple[str, str, float]] = {
    "rest-read": ("floor_ratio", ">=", 0.75),
    "graphql-read": ("floor_ratio", ">=", 0.60),
    "graphql-list": ("floor_ratio", ">=", 0.35),
    "rest-read@16": ("p99_ms", "<=", 25.0),
    "graphql-read@16": ("p99_ms", "<=", 25.0),
    "generate": ("floor_ratio", ">=", 2.0),
}
FANOUT_P99_MS = 1000.0
FANOUT_KB = 31.0


@dataclass(frozen=True)
class Sizes:
    videos: int
    rounds: int
    duration: float
    warmup: float
    subscribers: int
    fanout_rounds: int
    events: int
    idle_streams: int = 1_000
    settle: float = 1.0  # seconds for the server to settle before each RSS reading of the idle figure


FULL = Sizes(videos=10_000, rounds=3, duration=10, warmup=3, subscribers=2_000, fanout_rounds=2, events=5)
QUICK = Sizes(videos=200, rounds=1, duration=1, warmup=0, subscribers=20, fanout_rounds=1, events=1,
              idle_streams=100, settle=0.3)


def graphql_available() -> bool:
    return importlib.util.find_spec("kensa_gql.api.graphql") is not None


def video_fields() -> list[str]:
    """Every field of the schema's Video type, so the list figure asks for all of them."""
    from graphql import GraphQLObjectType, build_schema, get_named_type

    from kensa_gql.api.graphql.schema import export_schema

    video = build_schema(export_schema()).type_map["Video"]
    assert isinstance(video, GraphQLObjectType)
    fields = []
    for name, field in video.fields.items():
        kind = get_named_type(field.type)
        # An object field (failure) is asked for with all of its own fields, which are scalars.
        fields.append(f"{name} {{ {' '.join(kind.fields)} }}" if isinstance(kind, GraphQLObjectType) else name)
    return fields


def _json(body: bytes) -> Any:
    return json.loads(body)


def _check_rest(_status: int, body: bytes) -> None:
    data = _json(body)
    assert data["success"] and data["data"]["uuid"], data


def _check_gql(field: str) -> throughput.Check:
    def check(_status: int, body: bytes) -> None:
        data = _json(body)
        assert not data.get("errors") and data["data"][field], data
    return check


def http_figures(selected: set[str], seeded: seed.Seeded | None, generator: seed.Seeded | None,
                 list_fields: list[str], *, postgres: bool = False,
                 sqlite_generator: seed.Seeded | None = None) -> list[throughput.HttpFigure]:
    F, T = throughput.HttpFigure, load.Target
    figures = [F("baseline", "baseline", T("GET", "/"), 64, "", what="bare Starlette JSON hello-world")]
    if postgres and seeded is not None:
        floor = T("GET", "/video/", paths=[f"/video/{u}" for u in seeded.readable])
        figures.append(F("floor", "floor", floor, 64, "baseline", _check_floor,
                         "bare Starlette endpoint, one asyncpg pool fetchrow by uuid (the PostgreSQL floor)"))
        if "latency" in selected:
            figures.append(F("floor@16", "floor", floor, 16, "baseline@16", _check_floor,
                             "the floor at 16 connections"))
    n_figures = len(figures)
    if seeded is not None:
        auth = {"Authorization": f"Bearer {seeded.key}"}
        gql_headers = {**auth, "Content-Type": "application/json"}
        rest = T("GET", "/api/v1/video/", auth, paths=[f"/api/v1/video/{u}" for u in seeded.readable])
        read = T("POST", "/graphql", gql_headers, bodies=[
            json.dumps({"query": READ_QUERY, "variables": {"uuid": u}}, separators=(",", ":"))
            for u in seeded.readable])
        if "rest-read" in selected:
            figures.append(F("rest-read", "gateway", rest, 64, "baseline", _check_rest,
                             "GET /api/v1/video/{uuid} with a valid key"))
        if "graphql-read" in selected:
            figures.append(F("graphql-read", "gateway", read, 64, "baseline", _check_gql("video"),
                             "query video(uuid) { uuid status progress videoUrl creditsUsed } over POST"))
        if "graphql-list" in selected:
            query = ("query Videos { videos(page: 1, pageSize: 20) { total page pageSize videos { "
                     + " ".join(list_fields) + " } } }")
            body = json.dumps({"query": query}, separators=(",", ":"))
            figures.append(F("graphql-list", "gateway", T("POST", "/graphql", gql_headers, body=body), 64,
                             "baseline", _check_gql("videos"), "videos(page: 1, pageSize: 20) with all Video fields"))
        if "latency" in selected:
            figures.append(F("baseline@16", "baseline", T("GET", "/"), 16, "", what="baseline at 16 connections"))
            figures.append(F("rest-read@16", "gateway", rest, 16, "baseline@16", _check_rest,
                             "REST read at 16 connections"))
            if graphql_available():
                figures.append(F("graphql-read@16", "gateway", read, 16, "baseline@16", _check_gql("video"),
                                 "GraphQL read at 16 connections"))
    if generator is not None:
        auth = {"Authorization": f"Bearer {generator.key}", "Content-Type": "application/json"}
        keys = generator.keys
        if graphql_available():
            body = json.dumps({"query": GENERATE_MUTATION, "variables": {"input": GENERATE_INPUT}},
                              separators=(",", ":"))
            target = T("POST", "/graphql", auth, body=body, keys=keys)
            figures.append(F("generate", "generator", target, 64, "baseline", _check_gql("generateVideo"),
                             "accepted generateVideo mutations (runner off), ledger checked afterwards"))
        else:
            body = json.dumps({**GENERATE_INPUT, "quality": "720p"})
            target = T("POST", "/api/v1/video/generate", auth, body=body, keys=keys)
            figures.append(F("generate", "generator", target, 64,
                             "baseline", _check_rest, "accepted POST /api/v1/video/generate (runner off)"))
        if sqlite_generator is not None:
            # The same requests to a SQLite gateway in the same rounds: PostgreSQL's target is 2x it.
            sqlite_auth = {**auth, "Authorization": f"Bearer {sqlite_generator.key}"}
            figures[-1].floor = "generate-sqlite"
            figures.append(F("generate-sqlite", "generator-sqlite",
                             load.Target(target.method, target.path, sqlite_auth, body=target.body,
                                         keys=sqlite_generator.keys), 64, "baseline",
                             figures[-1].check, "the generate figure on SQLite, same rounds"))
    if postgres:
        for figure in figures[n_figures:]:
            if figure.server == "gateway":
                figure.floor = "floor@16" if figure.connections == 16 else "floor"
    return figures


def _check_floor(_status: int, body: bytes) -> None:
    assert _json(body)["uuid"], body


def met(name: str, entry: dict[str, Any], targets: dict[str, tuple[str, str, float]] = TARGETS) -> str:
    target = targets.get(name)
    if target is None or target[0] not in entry:
        return ""
    key, op, bound = target
    value = entry[key]["median"]
    ok = value >= bound if op == ">=" else value <= bound
    what = {"p99_ms": "p99", "floor_ratio": f"vs {entry.get('floor')}"}.get(key, key)
    return f"target {what} {op} {bound:g}: {'MET' if ok else 'NOT MET'}"


def print_http(results: dict[str, Any], say: Any, targets: dict[str, tuple[str, str, float]] = TARGETS) -> None:
    floors = any("floor_ratio" in e for e in results.values())
    say(f"{'figure':<17} {'req/s min / median / max':>27}   {'ratio (min-max)':<20} "
        + (f"{'vs floor (min-max)':<19} " if floors else "") + f"{'p50 ms':>7} {'p99 ms':>8} {'CPU us/req':>10}")
    for name, e in results.items():
        r, q = e["rps"], e["ratio"]
        f = e.get("floor_ratio")
        vs = "" if not floors else (f"{f['median']:>6.3f} ({f['min']:.2f}-{f['max']:.2f})  " if f else " " * 20)
        say(f"{name:<17} {r['min']:>8,.0f} / {r['median']:>7,.0f} / {r['max']:>7,.0f}   "
            f"ratio {q['median']:.3f} ({q['min']:.2f}-{q['max']:.2f}) {vs}{e['p50_ms']['median']:>7.2f} "
            f"{e['p99_ms']['median']:>8.2f} {e['cpu_us_per_request']['median']:>10.0f}  {met(name, e, targets)}")
        if e["non2xx"] or e["socket_errors"]:
            say(f"{'':<17} !! {e['non2xx']} non-2xx responses, {e['socket_errors']} socket errors")
        if "ledger" in e:
            led = e["ledger"]
            verdict = "EXACT" if led["exact"] else "NOT EXACT: " + "; ".join(led["problems"])
            say(f"{'':<17} ledger {verdict} ({led['videos']:,} videos, {led['frozen']:,} credits frozen "
                f"= {led['videos']:,} x {led['price']})")


def print_fanout(name: str, e: dict[str, Any], say: Any) -> None:
    g, b = e["gateway"], e["baseline"]
    n = e["subscribers"]
    ratio = g["p99_ms"]["median"] / b["p99_ms"]["median"]
    kb_ratio = g["rss_per_subscriber_kb"]["median"] / max(b["rss_per_subscriber_kb"]["median"], 1e-9)
    ok_time = g["p99_ms"]["median"] < FANOUT_P99_MS
    ok_kb = g["rss_per_subscriber_kb"]["median"] <= FANOUT_KB
    say(f"{name:<17} N={n:,}: p50 {g['p50_ms']['median']:.0f} ms, p99 min / median / max "
        f"{g['p99_ms']['min']:.0f} / {g['p99_ms']['median']:.0f} / {g['p99_ms']['max']:.0f} ms, "
        f"{g['rss_per_subscriber_kb']['median']:.1f} KB/subscriber, "
        f"{g['server_cpu_us_per_delivery']['median']:.0f} us CPU/delivery")
    say(f"{'':<17} baseline (bare Starlette WS): p99 {b['p99_ms']['median']:.0f} ms, "
        f"{b['rss_per_subscriber_kb']['median']:.1f} KB/subscriber, "
        f"{b['server_cpu_us_per_delivery']['median']:.0f} us CPU/delivery")
    say(f"{'':<17} ratio p99 {ratio:.2f}, ratio KB {kb_ratio:.2f}; target p99 < 1 s"
        f"{' (defined at 10,000)' if n != 10_000 else ''}: {'MET' if ok_time else 'NOT MET'}; "
        f"<= {FANOUT_KB:g} KB/subscriber: {'MET' if ok_kb else 'NOT MET'}")


def environment(tool: str) -> dict[str, Any]:
    from importlib.metadata import version

    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    return {"python": platform.python_version(), "cpu": cpu, "pinned": pinning_possible(), "load_tool": tool,
            "commit": commit, **{p: version(p) for p in ("strawberry-graphql", "starlette", "uvicorn", "sqlalchemy",
                                                          "aiosqlite", "uvloop", "httptools")}}


UNLIMITED = 1_000_000_000  # per minute: the most KENSA_RATE_LIMIT_* take


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="*", choices=[*FIGURES, []], metavar="FIGURE",
                        help=f"which figures (default all): {', '.join(FIGURES)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: keeps the suite working (CI)")
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers (default 2,000)")
    parser.add_argument("--streams", type=int, help="idle-streams: streams of each kind (default 1,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 10)")
    parser.add_argument("--videos", type=int, help="videos in the read database (default 10,000)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk when installed)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/<date>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (databases, logs)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="the gateway's database (postgres: KENSA_BENCH_POSTGRES_URL's server, fresh databases)")
    parser.add_argument("--graphql-fastpath", choices=("on", "off"), default="on",
                        help="the gateway's KENSA_GRAPHQL_FASTPATH (off: stock Strawberry serves /graphql)")
    parser.add_argument("--rate-limits", choices=("on", "off"), default="on",
                        help="the gateway's KENSA_RATE_LIMITS; on, with budgets no bench load reaches")
    parser.add_argument("--metrics", choices=("on", "off"), default="on",
                        help="the gateway's KENSA_METRICS (the HTTP instruments and /metrics)")
    parser.add_argument("--read-memo", choices=("on", "off"), default="on",
                        help="the gateway's KENSA_DB_READ_MEMO (SQLite: answers kept until the next commit)")
    parser.add_argument("--writes-per-second", type=float, default=0.0, metavar="N",
                        help="SQLite: another process commits N progress updates a second to the read database "
                             "during the rounds, as a worker would (each commit empties the read memo)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def background_writes(seeded: seed.Seeded | None, rate: float) -> Iterator[None]:
    """``bench.writer`` committing ``rate`` updates a second to the read database, on the load's core."""
    if not rate or seeded is None:
        yield
        return
    argv = [sys.executable, "-m", "bench.writer", seeded.url, str(rate)]
    writer = subprocess.Popen(["taskset", "-c", "1", *argv] if pinning_possible() else argv, cwd=ROOT)
    try:
        yield
    finally:
        writer.terminate()
        writer.wait(10)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(videos=args.videos or base.videos, rounds=args.rounds or base.rounds,
                  duration=args.duration or base.duration, warmup=base.warmup,
                  subscribers=args.subscribers or base.subscribers, fanout_rounds=base.fanout_rounds,
                  events=base.events, idle_streams=args.streams or base.idle_streams, settle=base.settle)
    # --quick alone leaves out the two-process fan-out (three more gateway starts, and it needs Redis)
    # and the idle streams (two more gateway starts, ~10 s even at 100 streams).
    slow = ("fanout-replicas", "idle-streams")
    selected = set(args.figures or (f for f in FIGURES if not (args.quick and f in slow)))
    if not graphql_available():
        for name in sorted(selected & GRAPHQL_FIGURES):
            print(f"{name}: unavailable (this build has no GraphQL API)")
        selected -= GRAPHQL_FIGURES
    tool = "wrk" if args.load == "wrk" or (args.load == "auto" and load.wrk_available()) else "python"
    today = datetime.now(UTC).date().isoformat()
    postgres = args.database == "postgres"
    name = (today + ("-postgres" if postgres else "") + ("-quick" if args.quick else "")
            + ("-fastpath-off" if args.graphql_fastpath == "off" else "")
            + ("-limits-off" if args.rate_limits == "off" else "") + ("-metrics-off" if args.metrics == "off" else "")
            + ("-memo-off" if args.read_memo == "off" else "")
            + (f"-writes-{args.writes_per_second:g}" if args.writes_per_second else ""))
    out = args.out or ROOT / "bench" / "results" / f"{name}.json"
    workdir = Path(tempfile.mkdtemp(prefix="kensa-bench-"))
    started = time.monotonic()

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"kensa-gql bench: {', '.join(f for f in FIGURES if f in selected)}; load generator {tool}; "
        f"server on core 0, load on core 1{'' if pinning_possible() else ' (pinning unavailable)'}; "
        f"{sizes.rounds} round(s) x {sizes.duration:g} s; GraphQL fast path {args.graphql_fastpath}; "
        f"rate limits {args.rate_limits}; metrics {args.metrics}; read memo {args.read_memo}; "
        f"database {args.database}"
        + (f"; {args.writes_per_second:g} commits/s to the read database" if args.writes_per_second else ""))
    if args.writes_per_second and args.database != "sqlite":
        raise SystemExit("--writes-per-second: SQLite only")
    results: dict[str, Any] = {}
    made: list[seed.Seeded] = []
    targets = PG_TARGETS if postgres else TARGETS
    try:
        needs_reads = bool(selected & {"rest-read", "graphql-read", "graphql-list", "latency", "fanout",
                                       "fanout-replicas", "idle-streams"})
        seeded = (seed.seed(workdir, "reads.db", videos=sizes.videos, database=args.database)
                  if needs_reads else None)
        generator = (seed.seed(workdir, "generate.db", videos=0, users=GENERATE_USERS, credits=MAX_CREDITS,
                               database=args.database) if "generate" in selected else None)
        sqlite_generator = (seed.seed(workdir, "generate-sqlite.db", videos=0, users=GENERATE_USERS,
                                      credits=MAX_CREDITS)
                            if postgres and generator is not None else None)
        made += [s for s in (seeded, generator) if s is not None]
        env = {"KENSA_MEDIA_DIR": str(workdir / "media"), "KENSA_LOG_LEVEL": "WARNING",
               "KENSA_GRAPHQL_FASTPATH": "true" if args.graphql_fastpath == "on" else "false",
               # Limits on (the default) are set explicitly, far above any load here: the bench's
               # own key must never be refused, yet every request pays the check.
               "KENSA_RATE_LIMITS": "true" if args.rate_limits == "on" else "false",
               "KENSA_RATE_LIMIT_GENERATE_PER_MINUTE": str(UNLIMITED),
               "KENSA_RATE_LIMIT_REQUESTS_PER_MINUTE": str(UNLIMITED),
               "KENSA_RATE_LIMIT_ANONYMOUS_PER_MINUTE": str(UNLIMITED),
               "KENSA_METRICS": "true" if args.metrics == "on" else "false",
               "KENSA_DB_READ_MEMO": "true" if args.read_memo == "on" else "false"}
        http_selected = selected - {"fanout", "fanout-replicas", "idle-streams"}
        if http_selected:
            fields = video_fields() if "graphql-list" in selected else []
            figures = http_figures(http_selected, seeded, generator, fields, postgres=postgres,
                                   sqlite_generator=sqlite_generator)
            servers = {"baseline": Server("baseline", uvicorn_argv("bench.apps.baseline:app"), log_dir=workdir)}
            if postgres and seeded is not None:
                dsn = seed.postgres_url(seed.postgres_name("reads.db"), "postgresql")
                servers["floor"] = Server("floor", uvicorn_argv("bench.apps.pgfloor:app"),
                                          env={"KENSA_BENCH_FLOOR_DSN": dsn}, log_dir=workdir)
            if seeded is not None:
                servers["gateway"] = Server("gateway", gateway_argv(),
                                            env={**env, "KENSA_DATABASE_URL": seeded.url}, log_dir=workdir)
            if generator is not None:
                servers["generator"] = Server("generator", gateway_argv(),
                                              env={**env, "KENSA_DATABASE_URL": generator.url}, log_dir=workdir)
            if sqlite_generator is not None:
                servers["generator-sqlite"] = Server("generator-sqlite", gateway_argv(), log_dir=workdir, env={
                    **env, "KENSA_DATABASE_URL": sqlite_generator.url})
            with running(*servers.values()), background_writes(seeded, args.writes_per_second):
                results.update(throughput.run_rounds(figures, servers, rounds=sizes.rounds, duration=sizes.duration,
                                                     warmup=sizes.warmup, tool=tool, workdir=workdir, log=say))
            if generator is not None:
                gen = results["generate"]
                gen["ledger"] = ledger_check.check(generator.url, accepted_at_least=gen["accepted"],
                                                   in_flight_at_most=64 * (sizes.rounds + 1), price=PRICE)
            if sqlite_generator is not None:
                gen = results["generate-sqlite"]
                gen["ledger"] = ledger_check.check(sqlite_generator.url, accepted_at_least=gen["accepted"],
                                                   in_flight_at_most=64 * (sizes.rounds + 1), price=PRICE)
        if "fanout" in selected:
            assert seeded is not None
            results[f"fanout@{sizes.subscribers}"] = run_fanout(seeded, sizes, env, workdir, say)
        if "fanout-replicas" in selected:
            assert seeded is not None
            results[f"fanout-replicas@{sizes.subscribers}"] = run_fanout_replicas(seeded, sizes, env, workdir, say)
        if "idle-streams" in selected:
            assert seeded is not None
            idle_seeded = seeded

            def idle_server(name: str, extra: dict[str, str]) -> Server:
                return Server(name, gateway_argv(), env={**env, "KENSA_DATABASE_URL": idle_seeded.url, **extra},
                              log_dir=workdir)
            results[f"idle-streams@{sizes.idle_streams}"] = idle.run(
                idle_server, n=sizes.idle_streams, key=seeded.key, uuid=seeded.watched, rounds=sizes.fanout_rounds,
                settle=sizes.settle, log=say)
    except Exception:
        say(f"the bench failed; server logs are in {workdir}")
        raise
    finally:
        if not args.keep:
            for made_db in made:
                seed.drop_postgres(made_db.url)
    say("")
    say(f"results ({datetime.now(UTC).isoformat(timespec='seconds')}, {time.monotonic() - started:.0f} s)")
    http_results = {k: v for k, v in results.items() if not k.startswith(("fanout", "idle-streams"))}
    if http_results:
        print_http(http_results, say, targets)
    for name, entry in results.items():
        if name.startswith("fanout-replicas"):
            print_replicas(entry, say)
        elif name.startswith("fanout"):
            print_fanout("fanout", entry, say)
        elif name.startswith("idle-streams"):
            idle.report(entry, say)
    save(out, results, sizes, tool, args.database, targets)
    say(f"written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if args.keep:
        say(f"scratch kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    ledgers = [e["ledger"] for e in http_results.values() if "ledger" in e]
    bad_http = any(e.get("non2xx") or e.get("socket_errors") for e in http_results.values())
    return 1 if any(not ledger["exact"] for ledger in ledgers) or bad_http else 0


def run_fanout(seeded: seed.Seeded, sizes: Sizes, env: dict[str, str], workdir: Path, say: Any) -> dict[str, Any]:
    counter = fanout.Counter()
    rounds: dict[str, list[dict[str, Any]]] = {"gateway": [], "baseline": []}
    for rnd in range(sizes.fanout_rounds):
        for kind in ("gateway", "baseline"):
            if kind == "gateway":
                server = Server("gateway", gateway_argv(), env={**env, "KENSA_DATABASE_URL": seeded.url},
                                log_dir=workdir)
                hook = "/_bench/status"
            else:
                server = Server("baseline", uvicorn_argv("bench.apps.baseline:app"), log_dir=workdir)
                hook = "/_bench/publish"
            say(f"  fan-out round {rnd + 1}/{sizes.fanout_rounds}: {kind}, {sizes.subscribers:,} subscribers")
            with running(server):
                rounds[kind].append(fanout.measure(server, hook=hook, n=sizes.subscribers, key=seeded.key,
                                                   uuid=seeded.watched, events=sizes.events, counter=counter,
                                                   log=say))
    return {"subscribers": sizes.subscribers, "what": "videoStatus subscribers over graphql-transport-ws, one change",
            "gateway": fanout.summarise(rounds["gateway"]), "baseline": fanout.summarise(rounds["baseline"])}


def run_fanout_replicas(seeded: seed.Seeded, sizes: Sizes, env: dict[str, str], workdir: Path,
                        say: Any) -> dict[str, Any]:
    """Each round: one gateway (the in-process channel), then two gateways sharing Redis, the
    subscribers split between them and the change made through the first."""
    counter = fanout.Counter()
    rounds: dict[str, list[dict[str, Any]]] = {"single": [], "replicas": []}
    for rnd in range(sizes.fanout_rounds):
        for kind in ("single", "replicas"):
            count = 1 if kind == "single" else 2
            extra = {} if kind == "single" else {"KENSA_BROADCAST_URL": REDIS_URL}
            servers = [Server(f"gateway-{kind}-{i}", gateway_argv(), log_dir=workdir,
                              env={**env, "KENSA_DATABASE_URL": seeded.url, **extra}) for i in range(count)]
            say(f"  fan-out over replicas round {rnd + 1}/{sizes.fanout_rounds}: {count} gateway(s), "
                f"{sizes.subscribers:,} subscribers{' via Redis' if extra else ''}")
            with running(*servers):
                rounds[kind].append(fanout.measure_many(servers, hook="/_bench/status", n=sizes.subscribers,
                                                        key=seeded.key, uuid=seeded.watched, events=sizes.events,
                                                        counter=counter, log=say))
    return {"subscribers": sizes.subscribers, "redis": REDIS_URL.split("@")[-1],
            "what": "videoStatus subscribers over two gateway processes fed by Redis, one change",
            "replicas": fanout.summarise(rounds["replicas"]), "single": fanout.summarise(rounds["single"])}


def print_replicas(e: dict[str, Any], say: Any) -> None:
    r, one = e["replicas"], e["single"]
    kb = r["rss_per_subscriber_kb"]["median"] / max(one["rss_per_subscriber_kb"]["median"], 1e-9)
    ok = r["p99_ms"]["median"] < FANOUT_P99_MS
    say(f"{'fanout-replicas':<17} N={e['subscribers']:,} over 2 processes + Redis: p50 {r['p50_ms']['median']:.0f} ms, "
        f"p99 min / median / max {r['p99_ms']['min']:.0f} / {r['p99_ms']['median']:.0f} / {r['p99_ms']['max']:.0f} ms, "
        f"{r['rss_per_subscriber_kb']['median']:.1f} KB/subscriber, "
        f"{r['server_cpu_us_per_delivery']['median']:.0f} us CPU/delivery")
    say(f"{'':<17} one process (in-process channel): p99 {one['p99_ms']['median']:.0f} ms, "
        f"{one['rss_per_subscriber_kb']['median']:.1f} KB/subscriber, "
        f"{one['server_cpu_us_per_delivery']['median']:.0f} us CPU/delivery")
    say(f"{'':<17} ratio KB {kb:.2f}; target p99 < 1 s{' (defined at 10,000)' if e['subscribers'] != 10_000 else ''}"
        f": {'MET' if ok else 'NOT MET'}")


def save(out: Path, results: dict[str, Any], sizes: Sizes, tool: str, database: str = "sqlite",
         targets: dict[str, tuple[str, str, float]] = TARGETS) -> None:
    """Merge into the day's file: a later run of one figure replaces only that figure."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    data: dict[str, Any] = {"figures": {}, "runs": []}
    if out.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(out.read_text())
    for entry in results.values():
        entry["measured_at"] = now
    data["figures"].update(results)
    data["runs"].append({"at": now, "figures": sorted(results), "sizes": sizes.__dict__, "database": database,
                         "environment": environment(tool)})
    data["targets"] = {k: {"compare": v[0], "op": v[1], "bound": v[2]} for k, v in targets.items()}
    data["targets"]["fanout"] = {"p99_ms_below": FANOUT_P99_MS, "kb_per_subscriber_at_most": FANOUT_KB,
                                 "subscribers": 10_000}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
