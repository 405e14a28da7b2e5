"""Running the gateway: uvicorn for ``serve``, a bare event loop for ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

import uvicorn

from kensa_gql import logs
from kensa_gql.app import create_app
from kensa_gql.runner import Runner
from kensa_gql.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, run_worker: bool) -> None:
    logs.configure(settings.log_format, settings.log_level)
    app = create_app(settings, run_worker=run_worker)
    # uvloop + httptools are what make Python HTTP fast (see bench/); no per-message deflate:
    # it costs CPU and ~40 KB per WebSocket for small JSON frames.
    # A WebSocket frame is JSON-decoded before the GraphQL size limit can look at it, so frames
    # are capped at that limit plus room for variables, not uvicorn's 16 MiB.
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", ws="websockets-sansio",
                ws_per_message_deflate=False, ws_max_size=settings.graphql_max_document_bytes + 65_536,
                access_log=False, log_config=None, lifespan="on")


async def _report_health(runner: Runner, path: Path, *, every: float) -> None:
    """Touch ``path`` while the runner's claim rounds succeed; a stale file means an unhealthy worker."""
    while True:
        last = runner.last_claim_at
        if last is not None and time.monotonic() - last < max(3 * every, 10.0):
            await asyncio.to_thread(path.touch)
        await asyncio.sleep(every)


def run_worker(settings: Settings) -> None:
    logs.configure(settings.log_format, settings.log_level)

    async def main() -> None:
        app = create_app(settings, run_worker=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with app.router.lifespan_context(app):
            log.info("worker %s running", app.state.runner.owner)
            health = None
            if settings.worker_health_file:
                health = asyncio.create_task(_report_health(app.state.runner, Path(settings.worker_health_file),
                                                            every=2.0), name="worker-health")
            await stop.wait()
            if health is not None:
                health.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
