"""The fallback load generator when ``wrk`` is not installed: keep-alive HTTP/1.1 over asyncio
protocols on uvloop, in its own process (``python -m bench.pyload SPEC.json``), printing one JSON
object like the one parsed from wrk. It saturates one core at roughly 10-15k req/s, enough for
these servers, but it is slower than wrk: prefer wrk for the published figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any


def build_requests(spec: dict[str, Any]) -> list[bytes]:
    head = [f"{k}: {v}" for k, v in spec.get("headers", {}).items()]
    paths = spec.get("paths") or [spec["path"]]
    bodies = spec.get("bodies") or ([spec["body"]] if spec.get("body") is not None else [None])
    keys = spec.get("keys") or [None]
    out = []
    for i in range(max(len(paths), len(bodies), len(keys))):
        path, body, key = paths[i % len(paths)], bodies[i % len(bodies)], keys[i % len(keys)]
        auth = [] if key is None else [f"Authorization: Bearer {key}"]
        lines = [f"{spec['method']} {path} HTTP/1.1", f"Host: {spec['host']}:{spec['port']}",
                 *(h for h in head if key is None or not h.lower().startswith("authorization:")), *auth]
        data = b""
        if body is not None:
            data = body.encode()
            lines.append(f"Content-Length: {len(data)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return out


class Connection(asyncio.Protocol):
    def __init__(self, requests: list[bytes], stats: dict[str, Any], stop_at: float, done: asyncio.Future[None],
                 rnd: random.Random) -> None:
        self.requests = requests
        self.stats = stats
        self.stop_at = stop_at
        self.done = done
        self.rnd = rnd
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.rnd.randrange(len(self.requests))])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            now = time.perf_counter()
            status = int(head[0].split(" ", 2)[1])
            self.stats["latencies"].append(now - self.sent_at)
            if not 200 <= status < 400:
                self.stats["non2xx"] += 1
            if now >= self.stop_at:
                assert self.transport is not None
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.stats["errors"] += 1
        if not self.done.done():
            self.done.set_result(None)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    requests = build_requests(spec)
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"latencies": [], "non2xx": 0, "errors": 0}
    started = time.perf_counter()
    stop_at = started + float(spec["duration"])
    dones = []
    for i in range(int(spec["connections"])):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        await loop.create_connection(lambda d=done, n=i: Connection(requests, stats, stop_at, d, random.Random(n)),
                                     spec["host"], spec["port"])
    await asyncio.wait_for(asyncio.gather(*dones), timeout=float(spec["duration"]) + 60)
    elapsed = time.perf_counter() - started
    lat = sorted(stats["latencies"])

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "rps": len(lat) / elapsed, "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "non2xx": stats["non2xx"], "errors": stats["errors"], "tool": "python"}


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    try:
        import uvloop
        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
