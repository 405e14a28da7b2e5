"""Serving a graphql-transport-ws socket on the fast path: the handshake, the receive loop, the end.

Strawberry's handlers cost every socket a view adapter, a Starlette WebSocket, a handler with
its dictionaries, a context, a receive generator, and per operation a task and its stream: about
4 KB and 60 objects a socket that the fan-out of ten thousand subscribers pays for (and the
cyclic collector scans). Here the ASGI coroutine itself is the receive loop, and a socket is one
``Connection`` (connection.py) and its operations dictionary.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from strawberry.http.websocket_origin import is_same_origin, normalize_origin
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from kensa_gql.api.graphql.ws.connection import Connection, SocketConfig

log = logging.getLogger("kensa_gql.websocket")


async def serve(config: SocketConfig, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole life of one graphql-transport-ws socket (the view chose the subprotocol)."""
    if not origin_allowed(config.allowed_origins, scope):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})  # before accept: a 403
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": GRAPHQL_TRANSPORT_WS_PROTOCOL, "headers": []})
    connection = Connection(config, scope, send)
    try:
        # The receive loop is this coroutine itself: one frame per idle socket, not one per layer.
        while not connection.closed:
            deadline = connection.deadline
            if deadline is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    await connection.timed_out()
                    return
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            await connection.received(message.get("text"))
            # Not kept while waiting for the next one: the last message (a subscribe, its query and
            # variables) would otherwise stay with every idle socket, about 1 KB each.
            del message
    finally:
        await connection.shutdown()


def origin_allowed(allowed: tuple[str, ...], scope: Scope) -> bool:
    """Strawberry's check, with its public helpers: no Origin (not a browser), the same origin, or one allowed."""
    headers = HTTPConnection(scope).headers
    origin = headers.get("origin")
    if origin is None:
        return True
    if headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, headers.get("host")):
        return True
    if "*" in allowed or normalize_origin(origin) in allowed:
        return True
    log.warning("Rejected WebSocket connection from origin %r to host %r. If pages on this origin should be "
                "able to connect, add it to `allowed_origins`.", origin, headers.get("host"))
    return False
