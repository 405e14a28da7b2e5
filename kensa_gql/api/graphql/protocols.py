"""Strawberry's own WebSocket handlers, with what they do not do themselves.

Both protocols are Strawberry's (legacy graphql-ws always; graphql-transport-ws whenever the fast
path is off), subclassed for two things only:

* documents over ``graphql_max_document_bytes`` get an error for that operation, before parsing
  (as a POST gets a 413);
* a message whose shape would crash the handler (a JSON array for a message, a payload that is
  not an object, an id that cannot be a dictionary key) is refused as graphql-transport-ws
  refuses a malformed message (close 4400 "Failed to parse message"), and ignored by legacy
  graphql-ws, as it ignores what is not JSON: not an "Exception in ASGI application".

A database that cannot sign the socket in at connection_init (Unavailable from on_ws_connect) is
not a refusal: graphql-transport-ws closes 1013 "Try again later", legacy graphql-ws sends
connection_error with ``extensions.code`` UNAVAILABLE and closes as for a refusal.

The fast path's own graphql-transport-ws (ws/connection.py) does the same, in the same order.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from kensa_gql.api.graphql.limits import DocumentTooLarge, check_document
from kensa_gql.domain.errors import Unavailable


def _key(value: object) -> bool:
    return isinstance(value, Hashable)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    max_document_bytes: int = 0  # set by ``handlers``

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except Unavailable:
            await self.websocket.close(code=1013, reason="Try again later")

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or (message.get("type") == "complete" and not _key(message.get("id"))):
            await self.handle_invalid_message("Failed to parse message")
            return
        await super().handle_message(cast(Any, message))

    async def handle_subscribe(self, message: Any) -> None:
        # Strawberry checks, in order: acknowledged, the id (missing: 4400), a duplicate (4409), the
        # limit, then reads the payload. The size goes before the limit; the screen of the
        # payload comes where Strawberry would crash on it.
        if self.connection_acknowledged and "id" in message:
            op_id, payload = message["id"], message.get("payload")
            if not _key(op_id):
                await self.handle_invalid_message("Failed to parse message")
                return
            if op_id not in self.operations:
                if isinstance(payload, dict):
                    try:
                        check_document(payload.get("query"), self.max_document_bytes)
                    except DocumentTooLarge as exc:
                        await self.send_message({"id": op_id, "type": "error",
                                                 "payload": [exc.as_graphql_error().formatted]})
                        return
                limit = self.max_subscriptions_per_connection
                within = limit is None or len(self.operations) < limit
                if within and "payload" in message and not isinstance(payload, dict):
                    await self.handle_invalid_message("Failed to parse message")
                    return
        await super().handle_subscribe(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Any, Any]):
    max_document_bytes: int = 0  # set by ``handlers``

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except Unavailable as busy:
            await self.send_message({"type": "connection_error", "payload": {"message": busy.message, "extensions": {
                "code": busy.code, "retryAfter": busy.retry_after}}})
            await self.websocket.close(code=1011, reason="")

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not _key(message.get("id")):
            return
        if message.get("type") == "start" and self.connection_acknowledged:
            payload = message.get("payload")
            if "id" not in message:
                return
            if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
                await self.send_message({"type": "error", "id": message["id"],
                                         "payload": {"message": "Failed to parse message"}})
                return
            try:
                check_document(payload["query"], self.max_document_bytes)
            except DocumentTooLarge as exc:
                await self.send_message({"type": "error", "id": message["id"],
                                         "payload": exc.as_graphql_error().formatted})
                return
        await super().handle_message(cast(Any, message))


def handlers(max_document_bytes: int) -> tuple[type[TransportWSHandler], type[LegacyWSHandler]]:
    """The two handler classes for a view whose documents may be ``max_document_bytes`` long."""
    limit = {"max_document_bytes": max_document_bytes}
    return (type("TransportWSHandler", (TransportWSHandler,), limit),
            type("LegacyWSHandler", (LegacyWSHandler,), limit))
