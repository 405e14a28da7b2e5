"""One SSE client process: ``count`` idle ``GET /api/v1/video/{uuid}/events`` streams.

Talks to the coordinator (bench.idle) as bench.fanout_client does: prints ``{"ready": n}`` once
every stream has sent its first ``status`` event, then holds them open, reading nothing more,
until ``{"close": true}`` (or end of input) on stdin. Raw sockets rather than httpx: the client's
own cost must not crowd the server's core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit


async def open_stream(host: str, port: int, key: str, uuid: str, gate: asyncio.Semaphore
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with gate:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write((f"GET /api/v1/video/{uuid}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not a stream: {head[:200]!r}")
        await asyncio.wait_for(reader.readuntil(b"event: status"), 120)
        return reader, writer


async def main(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    gate = asyncio.Semaphore(args.concurrency)
    streams = await asyncio.gather(*(open_stream(host, port, args.key, args.uuid, gate) for _ in range(args.count)))
    print(json.dumps({"ready": len(streams)}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        if json.loads(line).get("close"):
            break
    for _reader, writer in streams:
        writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--uuid", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
