"""``GET /api/v1/video/{uuid}/events``: a video's status as server-sent events.

The video now (``event: status``, ``data:`` the REST task JSON, ``id:`` its version), then one
event per change that moves it on, and the stream ends after a terminal status. ``Last-Event-ID``
resumes: a client that already has a version gets only what is newer. A ``: keep-alive``
comment goes out every ``KENSA_SSE_KEEPALIVE_SECONDS`` (15 s), so proxies keep the stream open.

Cheap while idle, like a WebSocket subscriber: no task of its own and no database connection.
The request's own coroutine waits on a ``Watch`` (services/following.py), which the process's
event fan-out fills; and since that fan-out re-reads watched videos after a Redis reconnect, a
stream misses nothing when Redis restarts. A client that went away is noticed at the next
keep-alive at the latest (uvicorn's ``receive`` then answers ``http.disconnect`` at once).
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from starlette.types import Receive, Scope, Send

from kensa_gql import metrics
from kensa_gql.api import caller, render
from kensa_gql.api.rest.errors import rendered
from kensa_gql.domain.errors import NotFound
from kensa_gql.domain.videos import Video
from kensa_gql.services import following
from kensa_gql.services import videos as service
from kensa_gql.services.accounts import Authenticator
from kensa_gql.services.deps import Deps

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]
KEEP_ALIVE = b": keep-alive\n"  # a comment line alone: no blank line, so no (empty) event for any parser


def event(video: Video) -> bytes:
    """One ``status`` event: its id is the video's version, its data the REST task JSON."""
    data = orjson.dumps(render.video_task(video))
    return b"id: %d\nevent: status\ndata: %s\n\n" % (following.version(video), data)


def _last_event_id(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 12 else None
    return None


async def _gone(receive: Receive) -> bool:
    """Whether the client disconnected, without waiting (a pending receive is cancelled at once)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0):
            return bool((await receive())["type"] == "http.disconnect")
    return False


class VideoEventStream:
    """The endpoint, as a bare ASGI app (a Route runs it in the request's own coroutine)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        deps: Deps = state.deps
        authenticator: Authenticator = state.authenticator
        uuid = scope["path_params"]["uuid"]
        try:
            principal = await caller.authenticate(scope, authenticator)
            video = await service.get_video(uuid, principal, deps=deps)
        except Exception as exc:
            response = rendered(exc)
            if response is None:
                raise
            await response(scope, receive, send)
            return
        await receive()  # the (empty) GET body, so a later receive can only mean a disconnect
        metrics.SSE_STREAMS_OPEN.inc()
        try:
            async with following.Watch(video.uuid, deps.watchers) as watch:
                # Read again inside the watch: a change before it began is in this snapshot, one after reaches it.
                try:
                    video = await service.get_video(uuid, principal, deps=deps)
                except NotFound:
                    return
                await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                await self._stream(video, watch, _last_event_id(scope), deps.sse_keepalive_seconds, receive, send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            metrics.SSE_STREAMS_OPEN.dec()

    async def _stream(self, video: Video, watch: following.Watch, last_id: int | None, keep_alive: float,
                      receive: Receive, send: Send) -> None:
        tracking = following.Following(video)
        if last_id is None or following.version(video) > last_id:
            await send({"type": "http.response.body", "body": event(video), "more_body": True})
        while not tracking.done:
            try:
                async with asyncio.timeout(keep_alive):
                    change = await watch.next()
            except TimeoutError:
                if await _gone(receive):
                    return
                await send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
                continue
            if isinstance(change, following.Moved):
                continue  # never sent (this watch ignores places): REST has no queue place
            try:
                news = tracking.news(change)
            except NotFound:
                return  # deleted while watched: the stream ends, as a new request would get 404
            if news and (last_id is None or following.version(change) > last_id):
                await send({"type": "http.response.body", "body": event(change), "more_body": True})
