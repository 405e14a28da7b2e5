"""Oversized bodies are refused while they stream, by a real `kensa-gql serve`: 413, and no memory for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.services import accounts
from tests.conftest import free_port
from tests.e2e.test_crash_recovery import start_gateway, wait_ready

MB = 1024 * 1024
SENT_MB = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def fifty_megabytes() -> AsyncIterator[bytes]:
    """A JSON object whose one string never ends, sent chunked (no Content-Length)."""
    yield b'{"query": "{ models { id } }", "prompt": "'
    chunk = b"y" * MB
    for _ in range(SENT_MB):
        yield chunk


async def declared(port: int, path: str, headers: str) -> bytes:
    """Send only the head of a request declaring 300 MB, and read what comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
                 f"Content-Length: {300 * MB}\r\n\r\n{{".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return head.split(b"\r\n")[0] + b" " + body


@pytest.mark.parametrize("fastpath", ["true", "false"])
async def test_oversized_bodies_get_413_while_streaming_and_memory_stays_flat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fastpath: str) -> None:
    monkeypatch.setenv("KENSA_GRAPHQL_FASTPATH", fastpath)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_gateway(tmp_path, port, "serve.log")
    try:
        await wait_ready(url, proc)
        db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path}/kensa.db"))
        try:
            _, issued = await accounts.create_user("big@example.test", credits=100, db=db)
        finally:
            await db.dispose()
        auth = {"Authorization": f"Bearer {issued.key}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            # given a warmed-up server
            for _ in range(3):
                assert (await client.post("/graphql", json={"query": "{ models { id } }"})).status_code == 200
            before = rss_mb(proc.pid)

            # when 50 MB arrive chunked at each endpoint with a body
            answers: dict[str, Any] = {}
            for path in ("/api/v1/video/generate", "/graphql"):
                r = await client.post(path, content=fifty_megabytes(), headers=auth)
                answers[path] = (r.status_code, r.json())
            grown = rss_mb(proc.pid) - before

        # then each is refused with 413 in its transport's shape, without holding the body
        status, body = answers["/api/v1/video/generate"]
        assert status == 413 and body["success"] is False and body["error"]["code"] == "PAYLOAD_TOO_LARGE"
        status, body = answers["/graphql"]
        assert status == 413 and [e["extensions"]["code"] for e in body["errors"]] == ["PAYLOAD_TOO_LARGE"]
        assert grown < SENT_MB / 5, f"RSS grew {grown:.1f} MB for {SENT_MB} MB sent"

        # and a declared 300 MB is refused before its body is read, on every endpoint with one
        bearer = f"Authorization: Bearer {issued.key}\r\n"
        rest = await declared(port, "/api/v1/video/generate", bearer)
        assert rest.startswith(b"HTTP/1.1 413") and b'"PAYLOAD_TOO_LARGE"' in rest
        graphql = await declared(port, "/graphql", bearer)
        assert graphql.startswith(b"HTTP/1.1 413") and b'"PAYLOAD_TOO_LARGE"' in graphql
        webhook = await declared(port, "/webhooks/evolink/00000000-0000-0000-0000-000000000000/t", "")
        assert webhook.startswith(b"HTTP/1.1 413") and b'"PAYLOAD_TOO_LARGE"' in webhook
        assert rss_mb(proc.pid) - before < SENT_MB / 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)
