"""A gateway process killed with SIGKILL takes its render processes with it: nothing is left running."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from kensa_gql.settings import Settings
from tests.conftest import LiveServer, User, free_port
from tests.processes import GatewayProcess, ProcessId, descendants, gateway_env, kill_and_check_orphans

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(90)]

# The longest render the catalogue allows (several seconds of encoding), so the kill lands inside it.
SLOW = {"prompt": "a long render", "model": "sora-2", "duration": 15, "resolution": "1080p",
        "aspectRatio": "16:9"}


async def wait_mid_render(process: GatewayProcess, work_dir: Path, uuid: str) -> list[ProcessId]:
    """Wait until ``process`` encodes ``uuid`` (its part file exists); return what runs under it."""
    deadline = time.monotonic() + 60
    while not (work_dir / f"{uuid}.mp4.part").exists():
        assert process.process is not None and process.process.poll() is None, process.log()[-3000:]
        assert time.monotonic() < deadline, f"{process.name} never started rendering:\n{process.log()[-3000:]}"
        await asyncio.sleep(0.05)
    return descendants(process.pid)


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_render_processes_end_when_their_gateway_is_killed(
        command: str, settings: Settings, make_user: object, tmp_path: Path) -> None:
    user: User = await make_user(credits=1000)  # type: ignore[operator]
    args = ["serve", "--host", "127.0.0.1", "--port", str(free_port())] if command == "serve" else ["worker"]
    # given a gateway process (the runner in it) and an API replica to submit through
    gateway = GatewayProcess(command, args, gateway_env(settings, KENSA_LOCAL_GENERATION_SECONDS="60"), tmp_path)
    api = LiveServer(settings, run_worker=False)
    api.start()
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            created = await client.post("/api/v1/video/generate", json=SLOW, headers=user.headers)
        uuid = created.json()["data"]["uuid"]
        # when it is killed while its render process encodes the video
        running = await wait_mid_render(gateway, settings.media_dir / ".work", uuid)
        commands = " ".join(p.command() for p in running)
        assert "multiprocessing" in commands and "resource_tracker" in commands, commands
        assert gateway.process is not None
        # then every process it started ends by itself within a few seconds
        kill_and_check_orphans(gateway.process, timeout=5.0)
    finally:
        gateway.stop()
        api.stop()
