"""The gateway exactly as ``kensa-gql serve`` runs it, plus bench-only hooks under ``/_bench``.

The hooks live here, never in the product: ``POST /_bench/status`` makes one real status change
(a compare-and-set in the database, committed, then published through ``app.state.events``,
as the runner does) so the fan-out figure can time its delivery; ``GET /_bench/stats`` reports
how many subscribers are watching. Settings come from the usual ``KENSA_*`` variables.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kensa_gql import logs
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.app import create_app
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.server import run_uvicorn, ws_max_size
from kensa_gql.settings import load_settings


class BenchHooks:
    """Routes ``/_bench/*`` to the hooks and everything else, untouched, to the gateway."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._marked: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_bench/"):
            handler = {"/_bench/status": self.status, "/_bench/stats": self.stats,
                       "/_bench/memory": self.memory}.get(scope["path"])
            request = Request(scope, receive)
            response = await handler(request) if handler else JSONResponse({"error": "no such hook"}, 404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def status(self, request: Request) -> Response:
        state = self.app.state  # type: ignore[attr-defined]
        uuid = request.query_params["uuid"]
        progress = int(request.query_params.get("progress", "1"))
        async with state.deps.db.writing() as uow:
            store = VideosStore(uow)
            video = await store.get_by_uuid(uuid)
            if video is None:
                return JSONResponse({"error": "no such video"}, 404)
            updated = await store.update_status(video, status=VideoStatus.GENERATING.value, progress=progress)
            await uow.commit()
        published = time.time()
        await state.events.video_changed(updated)
        return JSONResponse({"published": published, "subscribers": state.events.watcher_count})

    async def memory(self, request: Request) -> Response:
        """Where memory went since the last ``?mark`` (run with PYTHONTRACEMALLOC=N to use it)."""
        import gc
        import tracemalloc

        if "objects" in request.query_params:  # how many objects the cyclic collector tracks
            by_type: dict[str, int] = {}
            for obj in gc.get_objects():
                name = type(obj).__qualname__
                if name in ("coroutine", "async_generator", "generator", "function", "method", "cell", "list"):
                    inner = getattr(obj, "__qualname__", None) or getattr(getattr(obj, "__func__", None),
                                                                          "__qualname__", None)
                    if name == "cell":
                        try:
                            inner = type(obj.cell_contents).__qualname__
                        except ValueError:
                            inner = "empty"
                    if name == "list":
                        inner = type(obj[0]).__qualname__ if obj else "empty"
                    name = f"{name}:{inner}"
                by_type[name] = by_type.get(name, 0) + 1
            return JSONResponse({"tracked": sum(by_type.values()), "by_type": by_type})
        if not tracemalloc.is_tracing():
            return JSONResponse({"error": "start the server with PYTHONTRACEMALLOC=<frames>"}, 409)
        snapshot = tracemalloc.take_snapshot()
        if "mark" in request.query_params or self._marked is None:
            self._marked = snapshot
            return JSONResponse({"marked": True})
        group = request.query_params.get("by", "lineno")
        top = snapshot.compare_to(self._marked, group)[: int(request.query_params.get("top", "40"))]
        return JSONResponse({"top": [{"where": str(s.traceback), "size_kb": s.size_diff / 1024,
                                      "count": s.count_diff} for s in top]})

    async def stats(self, _request: Request) -> Response:
        state = self.app.state  # type: ignore[attr-defined]
        return JSONResponse({"subscribers": state.events.watcher_count})


def _log_gc_pauses(threshold_ms: float) -> None:
    """Diagnostics (KENSA_BENCH_GC_LOG=<ms>): print every collection that paused longer."""
    import gc
    import sys

    started: list[float] = [0.0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        paused = (time.perf_counter() - started[0]) * 1000
        if paused >= threshold_ms:
            print(f"gc gen{info['generation']} {paused:.1f} ms, {info['collected']} collected", file=sys.stderr,
                  flush=True)

    gc.callbacks.append(watch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    if os.environ.get("KENSA_BENCH_GC_LOG"):
        _log_gc_pauses(float(os.environ["KENSA_BENCH_GC_LOG"]))
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level, direct=settings.log_direct)
    app = create_app(settings, run_worker=not args.no_worker)
    # serve()'s own uvicorn set-up, with a deeper accept backlog for thousands of WebSockets.
    run_uvicorn(BenchHooks(app), host="127.0.0.1", port=args.port, ws_max_size=ws_max_size(settings), backlog=4096)


if __name__ == "__main__":
    main()
