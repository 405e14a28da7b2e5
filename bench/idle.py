"""The idle-streams figure: memory per idle SSE stream beside memory per idle WebSocket subscriber.

Each round starts a fresh gateway per kind (RSS only grows in CPython: a second kind on the same
server would reuse what the first freed), opens one client and lets it go (so one-off costs are
not counted per stream), then opens N streams following one PENDING video and reads the server's
RSS growth once every one is registered as a watcher. Nothing changes meanwhile: the streams are
idle, as most are (issue 13: "no task and no database connection per idle stream").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.fanout import Clients, _wait_subscribed
from bench.servers import Server, running

KINDS = {"websocket": "bench.fanout_client", "sse": "bench.sse_client"}
# A stream whose client left is noticed at its next keep-alive, and the server's graceful stop
# waits for it: 1 s instead of 15 keeps each round short. Idle memory is the same (one timer).
EXTRA_ENV = {"websocket": {}, "sse": {"KENSA_SSE_KEEPALIVE_SECONDS": "1"}}


def measure(server: Server, *, kind: str, n: int, key: str, uuid: str, settle: float) -> dict[str, Any]:
    url = server.url.replace("http://", "ws://") + "/graphql" if kind == "websocket" else server.url
    warm = Clients(url, count=1, key=key, uuid=uuid, module=KINDS[kind])
    try:
        warm.ready()
    finally:
        warm.close()
    time.sleep(settle)
    before = server.rss_kb()
    started = time.monotonic()
    clients = Clients(url, count=n, key=key, uuid=uuid, module=KINDS[kind])
    try:
        if (ready := clients.ready()) != n:
            raise RuntimeError(f"{ready} of {n} {kind} streams ready")
        _wait_subscribed(server, n)
        connect_s = time.monotonic() - started
        time.sleep(settle)
        after = server.rss_kb()
    finally:
        clients.close()
    return {"connect_s": connect_s, "rss_before_kb": before, "rss_after_kb": after,
            "kb_per_stream": (after - before) / n}


def run(make_server: Callable[[str, dict[str, str]], Server], *, n: int, key: str, uuid: str, rounds: int,
        settle: float, log: Callable[[str], None]) -> dict[str, Any]:
    measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for rnd in range(rounds):
        for kind in KINDS:
            began = time.monotonic()
            server = make_server(f"gateway-idle-{kind}", EXTRA_ENV[kind])
            with running(server):
                measured[kind].append(measure(server, kind=kind, n=n, key=key, uuid=uuid, settle=settle))
            log(f"  idle round {rnd + 1}/{rounds}: {n:,} {kind} streams, "
                f"{measured[kind][-1]['kb_per_stream']:.1f} KB each ({time.monotonic() - began:.1f} s)")

    def summary(kind: str) -> dict[str, Any]:
        values = [r["kb_per_stream"] for r in measured[kind]]
        return {"kb_per_stream": {"min": min(values), "median": statistics.median(values), "max": max(values)},
                "rounds": measured[kind]}

    return {"streams": n, "what": "idle videoStatus followers: SSE streams beside graphql-transport-ws subscribers",
            "sse": summary("sse"), "websocket": summary("websocket")}


def report(e: dict[str, Any], say: Callable[[str], None]) -> None:
    sse, ws = e["sse"]["kb_per_stream"]["median"], e["websocket"]["kb_per_stream"]["median"]
    say(f"{'idle-streams':<17} N={e['streams']:,}: SSE {sse:.1f} KB/stream, WebSocket subscriber {ws:.1f} KB/stream; "
        f"ratio {sse / max(ws, 1e-9):.2f}")
