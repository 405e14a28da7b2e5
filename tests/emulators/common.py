"""What every vendor emulator shares: scripting, the request log, task timing, callbacks, files.

An emulator is a small Starlette app following one vendor's documented API. Tests script it
through ``Emulator.script`` (failures to inject, the outcome of the next tasks, callbacks) and
read ``Emulator.seen`` to check exactly what the gateway sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

SUCCESS = "success"
POLICY = "policy"          # the vendor's content moderation refuses the video
RETRYABLE = "retryable"    # the vendor fails the task for a passing reason (overload)
NEVER = "never"            # the task runs forever (for the gateway's timeout)
CANCELLED = "cancelled"    # the gateway cancelled the task through the vendor's cancel call


@dataclass
class Reply:
    """A canned answer served instead of the normal one."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        if isinstance(self.body, (dict, list)):
            return JSONResponse(self.body, status_code=self.status, headers=self.headers)
        return Response(self.body or b"", status_code=self.status, headers=self.headers)


@dataclass
class Script:
    create_replies: list[Reply] = field(default_factory=list)  # consumed, one per create call
    poll_replies: list[Reply] = field(default_factory=list)    # consumed, one per status call
    outcome: str = SUCCESS
    generation_seconds: float = 0.3
    download_status: int | None = None      # e.g. 404: the result link has expired
    callback: str | None = None             # "on_complete" or "after_poll"
    callback_copies: int = 1                # duplicates of the final callback
    stale_callback_after: bool = False      # then an out-of-order "still running" callback
    deliver_to: str | None = None           # origin to deliver callbacks to (tests run plain http)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class EmTask:
    id: str
    created: float
    request: Any
    outcome: str
    callback_url: str | None = None
    base: str = ""                      # the emulator's own origin, for result URLs
    done_reported: asyncio.Event = field(default_factory=asyncio.Event)
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator:
    """Base: subclasses define ``routes`` and the vendor's JSON."""

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    def __init__(self, *, key: str, video: Path) -> None:
        self.key = key
        self.video = video
        self.script = Script()
        self.seen: list[Seen] = []
        self.tasks: dict[str, EmTask] = {}
        self.callback_statuses: list[int] = []
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()

    # -- the log ----------------------------------------------------------------------------------
    async def record(self, request: Request, body: Any = None) -> Seen:
        if body is None and request.method == "POST":
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        seen = Seen(request.method, request.url.path, request.url.query, dict(request.headers), body,
                    time.monotonic())
        self.seen.append(seen)
        return seen

    def calls(self, method: str, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(path_prefix)]

    # -- scripting --------------------------------------------------------------------------------
    def canned(self, queue: list[Reply]) -> Response | None:
        return queue.pop(0).response() if queue else None

    def new_task(self, request: Any, *, prefix: str, base: str, callback_url: str | None = None) -> EmTask:
        task = EmTask(id=f"{prefix}{next(self._ids):06d}", created=time.monotonic(), request=request,
                      outcome=self.script.outcome, callback_url=callback_url, base=base.rstrip("/"))
        self.tasks[task.id] = task
        if callback_url and self.script.callback:
            self._spawn(self._call_back(task))
        return task

    def phase(self, task: EmTask) -> str:
        """queued, running or done, by elapsed time against the scripted generation time."""
        if task.outcome == CANCELLED:
            return "done"
        elapsed = time.monotonic() - task.created
        total = self.script.generation_seconds
        if task.outcome == NEVER or elapsed < total:
            return "queued" if elapsed < total * 0.2 else "running"
        return "done"

    def progress(self, task: EmTask) -> int:
        total = max(self.script.generation_seconds, 1e-6)
        if self.phase(task) == "done":
            return 100
        return min(99, int((time.monotonic() - task.created) / total * 100))

    # -- callbacks --------------------------------------------------------------------------------
    def callback_body(self, task: EmTask, *, final: bool) -> dict[str, Any]:
        raise NotImplementedError

    async def _call_back(self, task: EmTask) -> None:
        if self.script.callback == "after_poll":
            await task.done_reported.wait()
        else:
            await asyncio.sleep(self.script.generation_seconds + 0.05)
        bodies = [self.callback_body(task, final=True)] * self.script.callback_copies
        if self.script.stale_callback_after:
            bodies.append(self.callback_body(task, final=False))
        async with httpx.AsyncClient(timeout=10) as client:
            for body in bodies:
                try:
                    r = await client.post(self._deliver_url(task.callback_url or ""), json=body)
                    self.callback_statuses.append(r.status_code)
                except httpx.HTTPError:
                    self.callback_statuses.append(0)

    def _deliver_url(self, url: str) -> str:
        if self.script.deliver_to is None:
            return url
        parts = httpx.URL(url)
        return self.script.deliver_to.rstrip("/") + parts.raw_path.decode()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- result files -----------------------------------------------------------------------------
    def file_response(self, *, expired: Callable[[], Response] | None = None) -> Response:
        if self.script.download_status is not None:
            if expired is not None:
                return expired()
            return Response(b"gone", status_code=self.script.download_status, media_type="text/plain")
        return Response(self.video.read_bytes(), media_type="video/mp4")
