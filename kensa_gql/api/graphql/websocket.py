"""GraphQL over WebSocket: graphql-transport-ws and the legacy graphql-ws, one slotted object per socket.

Strawberry's handlers cost every socket a view adapter, a Starlette WebSocket, a handler with
its dictionaries, a context, a receive generator, and per operation a task and its stream: about
4 KB and 60 objects a socket that the fan-out of ten thousand subscribers pays for (and the
cyclic collector scans). Here the ASGI coroutine itself is the receive loop, a socket is one
``Connection`` and its operations dictionary, and a ``videoStatus`` subscription to a known
document is a ``Subscriber`` (subscribers.py), registered with the fan-out, with no task at all.

The protocols behave as Strawberry's handlers do (the close codes, the messages, their order and
JSON); everything that is not a lean subscription (queries and mutations over the socket,
documents not seen before, refused subscriptions) still executes through ``schema.stream`` /
``schema.subscribe``, with the schema's extensions and error rendering.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from strawberry.http.websocket_origin import is_same_origin, normalize_origin
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from kensa_gql.api.graphql.connection import Connection
from kensa_gql.api.graphql.legacy_ws import LegacyConnection
from kensa_gql.api.graphql.transport_ws import TransportConnection

if TYPE_CHECKING:
    from kensa_gql.api.graphql.view import KensaGraphQL

log = logging.getLogger("kensa_gql.websocket")
PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)


async def serve(view: KensaGraphQL, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole life of one GraphQL WebSocket: handshake, protocol, teardown."""
    if not _origin_allowed(view, scope):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})  # before accept: a 403
        return
    if (await receive())["type"] != "websocket.connect":
        return
    offered: list[str] = scope.get("subprotocols") or []
    chosen = next((p for p in offered if p in PROTOCOLS), None)  # the client's order, as Strawberry
    await send({"type": "websocket.accept", "subprotocol": chosen, "headers": []})
    connection: Connection
    if chosen == GRAPHQL_TRANSPORT_WS_PROTOCOL:
        connection = TransportConnection(view, scope, send)
    elif chosen == GRAPHQL_WS_PROTOCOL:
        connection = LegacyConnection(view, scope, send)
    else:
        await send({"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable"})
        return
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


def _origin_allowed(view: KensaGraphQL, scope: Scope) -> bool:
    """Strawberry's check: no Origin (not a browser), the same origin, or one allowed."""
    headers = HTTPConnection(scope).headers
    origin = headers.get("origin")
    if origin is None:
        return True
    if headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, headers.get("host")):
        return True
    allowed = view.allowed_origins
    if "*" in allowed or normalize_origin(origin) in allowed:
        return True
    log.warning("Rejected WebSocket connection from origin %r to host %r. If pages on this origin should be "
                "able to connect, add it to `allowed_origins`.", origin, headers.get("host"))
    return False
