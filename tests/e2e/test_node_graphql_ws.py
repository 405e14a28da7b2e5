"""A real frontend client: Node's graphql-ws (what Apollo Client and urql use) against a live server.

The client lives in tests/e2e/node (package.json + package-lock.json); its node_modules are
installed here with ``npm ci`` when missing (``make install`` does it too) and never committed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.graphql.wire import eventually, generate, ws_url
from tests.conftest import Serve

NODE_DIR = Path(__file__).parent / "node"
RUN_TIMEOUT = 60


@pytest.fixture(scope="session")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the graphql-ws client test"
    if not (NODE_DIR / "node_modules" / "graphql-ws" / "package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return NODE_DIR / "client.mjs"


async def run_client(script: Path, *args: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec("node", str(script), *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode() + out.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_graphql_ws_client_reads_generates_and_follows_a_video(node_client: Path, serve: Serve,
                                                                     make_user: Any) -> None:
    server = serve(local_generation_seconds=2.0)
    user = await make_user(credits=100)
    [report] = await run_client(node_client, ws_url(server.url), user.key, "flow")
    assert report["acked"] == 1  # one socket carried every operation
    assert "sora-2" in [m["id"] for m in report["models"]["data"]["models"]]
    assert report["me"]["data"]["me"]["email"] == user.email
    created = report["generated"]["data"]["generateVideo"]
    assert created["status"] == "PENDING"

    events = [e["data"]["videoStatus"] for e in report["events"]]
    assert events[-1]["status"] == "COMPLETED" and events[-1]["progress"] == 100 and events[-1]["videoUrl"]
    assert len([e for e in events if e["status"] == "GENERATING"]) >= 3
    assert all(e["id"] == created["uuid"] for e in events)
    price = created["creditsUsed"]
    assert report["after"]["data"]["me"]["credits"] == {"available": 100 - price, "frozen": 0, "used": price}
    foreign = report["foreign"]["errors"]
    assert [e["extensions"]["code"] for e in foreign] == ["NOT_FOUND"]


async def test_graphql_ws_client_with_a_bad_key_is_closed_with_4403(node_client: Path, serve: Serve) -> None:
    server = serve()
    [report] = await run_client(node_client, ws_url(server.url), "kg_" + "C" * 43, "bad-key")
    assert report == {"closeCode": 4403, "reason": "Forbidden"}


async def test_graphql_ws_client_unsubscribe_and_dispose_free_the_watcher(node_client: Path, serve: Serve,
                                                                          make_user: Any) -> None:
    server = serve(run_worker=False)  # the video stays PENDING: the subscription stays open
    user = await make_user(credits=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        uuid = await generate(client, user.key)
    process = await asyncio.create_subprocess_exec(
        "node", str(node_client), ws_url(server.url), user.key, "dispose", uuid,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    try:
        snapshot = json.loads(await asyncio.wait_for(process.stdout.readline(), RUN_TIMEOUT))
        assert snapshot["snapshot"]["data"]["videoStatus"]["status"] == "PENDING"
        assert server.app.state.events.watcher_count == 1
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert json.loads(out.decode().splitlines()[-1]) == {"disposed": True}
    await eventually(lambda: server.app.state.events.watcher_count == 0, "the watcher to be freed")
