"""Running the gateway: uvicorn for ``serve``, a bare event loop for ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from kensa_gql import logs
from kensa_gql.app import create_app
from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.domain.ports import Storage
from kensa_gql.runner import Runner
from kensa_gql.settings import Settings

log = logging.getLogger(__name__)

# How long a stop waits for responses still streaming: server-sent events and multipart
# subscriptions last until their video ends and a `Prefer: wait` up to 60 s, so without a bound a
# stop would wait for them. Past it they are cut; SSE clients resume with Last-Event-ID.
SHUTDOWN_GRACE_SECONDS = 5


def serve(settings: Settings, *, host: str, port: int, run_worker: bool) -> None:
    logs.configure(settings.log_format, settings.log_level, direct=settings.log_direct)
    # uvicorn ends a graceful shutdown by raising the signal it caught again with this handler in
    # place: write the last log lines before the process goes (a signal's death skips atexit).
    signal.signal(signal.SIGTERM, _flush_logs_then_die)
    run_uvicorn(create_app(settings, run_worker=run_worker), host=host, port=port,
                ws_max_size=ws_max_size(settings))


def _flush_logs_then_die(signum: int, _frame: object) -> None:
    logs.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def ws_max_size(settings: Settings) -> int:
    # A WebSocket frame is JSON-decoded before the GraphQL size limit can look at it, so frames
    # are capped at that limit plus room for variables, not uvicorn's 16 MiB.
    return settings.graphql_max_document_bytes + 65_536


def run_uvicorn(app: ASGIApp, *, host: str, port: int, ws_max_size: int, backlog: int = 2048) -> None:
    """Serve ``app`` as ``serve`` does (the bench runs the gateway through this too)."""
    # Everything built so far (the schema, the app, the libraries) lives as long as the process:
    # frozen, the cyclic collector stops rescanning it. Without this a full collection paused
    # the loop for 70-85 ms every few seconds under load (the GraphQL read's p99 at 16
    # connections was 55 ms for a 2.6 ms median).
    gc.collect()
    gc.freeze()
    # And collect the young less often: with 10,000 subscribers (two million objects) a full
    # collection takes 1-2 s, and each young collection promotes whatever a burst of deliveries
    # still holds, which is what brings the next full one closer.
    gc.set_threshold(10_000, 20, 100)
    # uvloop + httptools are what make Python HTTP fast (see bench/); no per-message deflate:
    # it costs CPU and ~40 KB per WebSocket for small JSON frames.
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", ws="websockets-sansio",
                ws_per_message_deflate=False, ws_max_size=ws_max_size, access_log=False, log_config=None,
                lifespan="on", backlog=backlog, timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)


async def _report_health(runner: Runner, storage: Storage, path: Path, *, every: float) -> None:
    """Touch ``path`` while the runner's claim rounds succeed and media storage can be written
    (what /readyz checks in ``serve``); a stale file means an unhealthy worker."""
    while True:
        last = runner.last_claim_at
        if last is not None and time.monotonic() - last < max(3 * every, 10.0):
            try:
                await storage.check_writable()
            except StorageUnavailable as exc:
                log.warning("worker health: %s", exc.message)
            else:
                await asyncio.to_thread(path.touch)
        await asyncio.sleep(every)


def run_worker(settings: Settings) -> None:
    logs.configure(settings.log_format, settings.log_level, direct=settings.log_direct)

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
                health = asyncio.create_task(_report_health(app.state.runner, app.state.storage,
                                                            Path(settings.worker_health_file), every=2.0),
                                             name="worker-health")
            await stop.wait()
            if health is not None:
                health.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
