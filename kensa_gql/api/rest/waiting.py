"""``Prefer: wait=N`` (RFC 7240, as Replicate uses it): hold a REST answer until the video is final.

The hold is the service's ``until_finished``: a watch on the video's events, no database
connection and no worker slot. It ends early when the client goes away: the request's
``receive`` reports ``http.disconnect``, and the wait is cancelled with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.datastructures import Headers
from starlette.types import Receive

MAX_WAIT_SECONDS = 60
T = TypeVar("T")


def preferred_wait(headers: Headers) -> int | None:
    """The ``wait`` preference in seconds, at most ``MAX_WAIT_SECONDS`` (a larger one is clamped);
    None without one. A malformed value is ignored, as RFC 7240 asks of preferences a server cannot
    use: the request is answered at once, as without the header."""
    for header in headers.getlist("prefer"):
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() != "wait":
                continue
            value = value.strip().strip('"')
            if value.isascii() and value.isdigit() and len(value) <= 9:
                return min(int(value), MAX_WAIT_SECONDS)
            return None
    return None


def applied(seconds: int) -> dict[str, str]:
    """The response header saying which wait was honoured (``Preference-Applied``)."""
    return {"Preference-Applied": f"wait={seconds}"}


async def unless_disconnected(receive: Receive, waiting: Awaitable[T]) -> tuple[bool, T | None]:
    """``waiting``'s result, or (False, None) as soon as the client disconnects (``waiting`` is
    then cancelled). Only for requests whose body has been read: ``receive`` is read for the
    disconnect, so nothing else may read it meanwhile."""
    work = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(work, gone, return_exceptions=True)
    if work.done() and not work.cancelled():
        return True, work.result()  # raises what the wait raised (NotFound after a delete)
    return False, None


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
