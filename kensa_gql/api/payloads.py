"""What clients send, read within bounds: bodies up to a size, JSON up to a depth.

Both transports read through here, so an oversized body or a deeply nested document meets the
same limit on REST, GraphQL over HTTP and WebSocket messages:

* a body is refused while it streams: a declared ``Content-Length`` over the limit before a byte
  is read, a chunked one as soon as the bytes counted pass it (memory never holds more than the
  limit);
* JSON nested deeper than ``MAX_JSON_DEPTH`` is refused as such. The standard library's parser
  raises RecursionError near a thousand levels, and a document just under that would still
  exhaust the stack of whatever walks it next (hashing, coercion, encoding).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope

# Our deepest real input is 3 levels (a GraphQL body, its variables, an input object).
MAX_JSON_DEPTH = 64


class BodyTooLarge(Exception):
    """A request body over ``limit`` bytes (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request is larger than {limit} bytes")
        self.limit = limit


class JSONTooDeep(ValueError):
    """JSON nested more than ``MAX_JSON_DEPTH`` levels: refused, never parsed by recursion alone."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")


def declared_too_large(scope: Scope, limit: int) -> bool:
    """True if the request's Content-Length is over ``limit`` (or not a number at all)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return not value.isdigit() or int(value) > limit
    return False


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, as Starlette's ``Request.body`` reads it; BodyTooLarge past ``limit``."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def capped(receive: Receive, limit: int) -> Receive:
    """A receive that raises BodyTooLarge once more than ``limit`` bytes of body have come."""
    received = 0

    async def receive_capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_capped


def loads(data: str | bytes) -> Any:
    """``json.loads``, but JSONTooDeep for anything nested deeper than ``MAX_JSON_DEPTH``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONTooDeep() from None
    # Nesting needs brackets: a text with few of them (most requests) needs no walk.
    if isinstance(data, bytes):
        opening = data.count(b"[") + data.count(b"{")
    else:
        opening = data.count("[") + data.count("{")
    if opening > MAX_JSON_DEPTH and too_deep(value):
        raise JSONTooDeep()
    return value


def too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if lists and objects nest in ``value`` more than ``limit`` levels (walked without recursion)."""
    if type(value) is dict and not any(type(v) is dict or type(v) is list for v in value.values()):
        return limit < 1  # flat, as most variables are: nothing to walk
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
