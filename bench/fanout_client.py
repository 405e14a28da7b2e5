"""One fan-out client process: ``count`` WebSockets, each one ``videoStatus`` subscription.

Talks to the coordinator (bench.fanout) by JSON lines: prints ``{"ready": n}`` once every socket
is acknowledged, subscribed and has its first snapshot; then answers each ``{"collect": p}`` on
stdin with the wall-clock times at which every socket received the update carrying progress
``p``; ``{"close": true}`` ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

QUERY = "subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"


class Subscriber:
    def __init__(self) -> None:
        self.seen: dict[int, float] = {}       # progress -> receive time
        self.waiters: dict[int, asyncio.Future[float]] = {}
        self.ws: ClientConnection | None = None
        self.error: str | None = None

    def wait_for(self, progress: int) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if progress in self.seen:
            fut.set_result(self.seen[progress])
        else:
            self.waiters[progress] = fut
        return fut


async def subscribe(url: str, key: str, uuid: str, sub: Subscriber, gate: asyncio.Semaphore) -> None:
    async with gate:
        ws = await connect(url, subprotocols=["graphql-transport-ws"], compression=None, max_queue=None,  # type: ignore[list-item]
                           ping_interval=None, open_timeout=120, close_timeout=5)
        sub.ws = ws
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no ack: {ack}")
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": QUERY, "variables": {"uuid": uuid}}}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if first.get("type") != "next":
            raise RuntimeError(f"no snapshot: {first}")


async def read(sub: Subscriber) -> None:
    assert sub.ws is not None
    async for raw in sub.ws:
        received = time.time()
        message: dict[str, Any] = json.loads(raw)
        if message.get("type") != "next":
            sub.error = str(message)[:300]
            continue
        progress = message["payload"]["data"]["videoStatus"]["progress"]
        sub.seen[progress] = received
        waiter = sub.waiters.pop(progress, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(received)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    subs = [Subscriber() for _ in range(args.count)]
    gate = asyncio.Semaphore(args.concurrency)
    await asyncio.gather(*(subscribe(args.url, args.key, args.uuid, s, gate) for s in subs))
    readers = [asyncio.create_task(read(s)) for s in subs]
    print(json.dumps({"ready": len(subs)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if "collect" in command:
            progress = int(command["collect"])
            futures = [s.wait_for(progress) for s in subs]
            done, pending = await asyncio.wait(futures, timeout=float(command.get("timeout", 60)))
            times = [f.result() for f in futures if f in done]
            for f in pending:
                f.cancel()
            errors = [s.error for s in subs if s.error][:3]
            print(json.dumps({"times": times, "missing": len(pending), "errors": errors}), flush=True)
        elif command.get("close"):
            break
    for r in readers:
        r.cancel()
    await asyncio.gather(*(s.ws.close() for s in subs if s.ws is not None), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--uuid", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    try:
        import uvloop
        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
