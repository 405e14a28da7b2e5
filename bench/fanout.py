"""The fan-out figure: N ``videoStatus`` subscribers, one status change, how long until all have it.

Subscribers are spread over client processes pinned to the load core. Each round starts a fresh
server (so its RSS growth is the subscribers' alone), connects N subscribers, makes one warm-up
change and then ``events`` measured changes, each timed from the moment the server published it
to the moment each client received it (one host, one clock). The bare Starlette WebSocket of
bench.apps.baseline gets the same treatment in the same round: it is the floor.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import httpx

from bench.servers import LOAD_CORE, ROOT, Server, pin_to


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


class Clients:
    """The client processes for one server, all talking JSON lines (WebSocket subscribers by
    default; ``module="bench.sse_client"`` for SSE streams, given the server's http URL)."""

    def __init__(self, url: str, *, count: int, key: str, uuid: str, module: str = "bench.fanout_client") -> None:
        self.procs: list[subprocess.Popen[str]] = []
        processes = max(1, min(8, math.ceil(count / 1250)))
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        for share in shares:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", module, "--url", url, "--key", key, "--uuid", uuid,
                 "--count", str(share)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                preexec_fn=lambda: pin_to(LOAD_CORE)))

    def _line(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a fan-out client exited with {proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ready(self) -> int:
        return sum(self._line(p)["ready"] for p in self.procs)

    def send(self, command: dict[str, Any]) -> None:
        for p in self.procs:
            stdin: IO[str] | None = p.stdin
            assert stdin is not None
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()

    def collect(self, progress: int) -> tuple[list[float], int, list[str]]:
        self.send({"collect": progress, "timeout": 60})
        times: list[float] = []
        missing = 0
        errors: list[str] = []
        for p in self.procs:
            answer = self._line(p)
            times += answer["times"]
            missing += answer["missing"]
            errors += answer["errors"]
        return times, missing, errors

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.send({"close": True})
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Counter:
    """Progress values only ever go up: the gateway sends a change only when it moves forward."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


def _wait_subscribed(server: Server, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(server.url + "/_bench/stats", timeout=30).json()["subscribers"]
        if got >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {got} of {n} subscribers registered on {server.name}")
        time.sleep(0.1)


def _change(server: Server, hook: str, uuid: str, progress: int) -> float:
    r = httpx.post(f"{server.url}{hook}", params={"uuid": uuid, "progress": progress}, timeout=120)
    r.raise_for_status()
    published: float = r.json()["published"]
    return published


def measure(server: Server, *, hook: str, n: int, key: str, uuid: str, events: int, counter: Counter,
            log: Callable[[str], None]) -> dict[str, Any]:
    """One round on one (fresh) server."""
    return measure_many([server], hook=hook, n=n, key=key, uuid=uuid, events=events, counter=counter, log=log)


def measure_many(servers: list[Server], *, hook: str, n: int, key: str, uuid: str, events: int, counter: Counter,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """One round on (fresh) servers sharing one channel: the subscribers spread evenly over them,
    each change made through the first server's hook; memory and CPU are the servers' together."""
    urls = [server.url.replace("http://", "ws://") + "/graphql" for server in servers]
    shares = [n // len(servers) + (1 if i < n % len(servers) else 0) for i in range(len(servers))]
    # One subscriber per server and one change first, so one-off costs (imports, caches, the
    # channel's connection) are not counted per subscriber.
    warm = [Clients(url, count=1, key=key, uuid=uuid) for url in urls]
    try:
        for w in warm:
            w.ready()
        p = counter.next()
        _change(servers[0], hook, uuid, p)
        for w in warm:
            w.collect(p)
    finally:
        for w in warm:
            w.close()
    time.sleep(0.5)
    rss_before = sum(server.rss_kb() for server in servers)
    started = time.monotonic()
    clients = [Clients(url, count=share, key=key, uuid=uuid) for url, share in zip(urls, shares, strict=True)]
    name = servers[0].name if len(servers) == 1 else f"{len(servers)} x {servers[0].name}"
    try:
        ready = sum(c.ready() for c in clients)
        if ready != n:
            raise RuntimeError(f"{ready} of {n} subscribers ready")
        for server, share in zip(servers, shares, strict=True):
            _wait_subscribed(server, share)
        connect_s = time.monotonic() - started
        time.sleep(1.0)
        rss_after = sum(server.rss_kb() for server in servers)
        p = counter.next()                       # a warm-up change, not reported
        _change(servers[0], hook, uuid, p)
        for c in clients:
            c.collect(p)
        results = []
        for _ in range(events):
            time.sleep(0.3)
            p = counter.next()
            cpu_before = sum(server.cpu_seconds() for server in servers)
            published = _change(servers[0], hook, uuid, p)
            times: list[float] = []
            missing, errors = 0, []
            for c in clients:
                t, m, e = c.collect(p)
                times += t
                missing += m
                errors += e
            cpu_used = sum(server.cpu_seconds() for server in servers) - cpu_before
            lat = [(t - published) * 1000 for t in times]
            if missing or errors:
                raise RuntimeError(f"{name}: {missing} subscribers missed the change; errors: {errors}")
            results.append({"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "all_ms": max(lat),
                            "server_cpu_us_per_delivery": cpu_used * 1e6 / n})
            log(f"  {name:<9} N={n}: p50 {results[-1]['p50_ms']:7.1f} ms  p99 {results[-1]['p99_ms']:7.1f} ms"
                f"  all {results[-1]['all_ms']:7.1f} ms")
    finally:
        for c in clients:
            c.close()
    return {"connect_s": connect_s, "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "rss_per_subscriber_kb": (rss_after - rss_before) / n, "events": results, "servers": len(servers)}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    events = [e for r in rounds for e in r["events"]]

    def s(key: str, values: list[float]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    return {"p50_ms": s("p50", [e["p50_ms"] for e in events]), "p99_ms": s("p99", [e["p99_ms"] for e in events]),
            "all_ms": s("all", [e["all_ms"] for e in events]),
            "server_cpu_us_per_delivery": s("cpu", [e["server_cpu_us_per_delivery"] for e in events]),
            "rss_per_subscriber_kb": s("rss", [r["rss_per_subscriber_kb"] for r in rounds]),
            "connect_s": s("connect", [r["connect_s"] for r in rounds]), "rounds": rounds}
