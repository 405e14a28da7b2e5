"""Strawberry's own WebSocket handlers, with what they do not do themselves.

Both protocols are Strawberry's (legacy graphql-ws always; graphql-transport-ws whenever the fast
path is off), subclassed for two things only:

* documents over ``graphql_max_document_bytes`` get an error for that operation, before parsing
  (as a POST gets a 413);
* a message nested deeper than ``payloads.MAX_JSON_DEPTH`` closes the socket with 4400 on both
  protocols (the view's ``decode_json`` raises JSONTooDeep out of Strawberry's read loop);
* a message whose shape would crash the handler (a JSON array for a message, a payload that is
  not an object, an id that cannot be a dictionary key) is refused as graphql-transport-ws
  refuses a malformed message (close 4400 "Failed to parse message"), and ignored by legacy
  graphql-ws, as it ignores what is not JSON: not an "Exception in ASGI application";
* an operation whose payload fields have the wrong types (a query that is not a string,
  variables that are not an object: ``frames.malformed``) is refused the same way (legacy: an
  error for that operation), not run into graphql-core as an internal error.

Beyond Strawberry, both:

* join the app's signed-in sockets (services/sessions.py) once acknowledged, and ``revoke``
  ends the socket when its key stops signing in, as a refused connection_init would have
  (graphql-transport-ws: close 4403; legacy: ``connection_error``, then close 1011), its
  operations cancelled first and its context signed out, so nothing runs on it after that;
* legacy graphql-ws gets graphql-transport-ws's init timeout: a socket that has not sent
  connection_init in time is closed with 4408, where Strawberry would keep it open for ever.

A database that cannot sign the socket in at connection_init (Unavailable from on_ws_connect) is
not a refusal: graphql-transport-ws closes 1013 "Try again later", legacy graphql-ws sends
connection_error with ``extensions.code`` UNAVAILABLE and closes as for a refusal.

The fast path's own graphql-transport-ws (ws/connection.py) does the same, in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Mapping
from typing import Any, cast

from starlette.websockets import WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from kensa_gql.api.graphql.context import presented_key, sessions
from kensa_gql.api.graphql.limits import DocumentTooLarge, check_document
from kensa_gql.api.graphql.ws.frames import malformed
from kensa_gql.api.payloads import JSONTooDeep
from kensa_gql.api.ratelimits import check_operation, formatted
from kensa_gql.domain.errors import Unauthenticated, Unavailable

# What an operation's close may meet when the client went first: nothing to do about it then.
_GONE = (OSError, RuntimeError, WebSocketDisconnected)


class _SignedIn:
    """Joins the app's signed-in sockets once the handler acknowledges; leaves when it ends."""

    context: Any
    connection_acknowledged: bool
    _joined_as: str | None = None

    def _join(self) -> None:
        key = presented_key(self.context.connection, self.context.connection_params)
        if key is None or key == self._joined_as:
            return
        self._leave()
        sessions(self.context.connection).join(key, self)
        self._joined_as = key

    async def revoke(self) -> None:
        raise NotImplementedError  # each protocol ends a socket its own way

    def _leave(self) -> None:
        if self._joined_as is not None:
            sessions(self.context.connection).leave(self._joined_as, self)
            self._joined_as = None


class SocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's WebSocket adapter, quiet once the socket is closed.

    When a handler closes a socket (a malformed message, a duplicate id, a revoked key), its
    operations' tasks may still be sending: Starlette refuses a send after the close, and each
    refusal was logged as "Exception in worker task". There is nobody left to tell, so what
    comes after the close is dropped, and a second close is a no-op.
    """

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            await super().send_json(message)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            await super().close(code, reason)


def _key(value: object) -> bool:
    return isinstance(value, Hashable)


class TransportWSHandler(_SignedIn, BaseGraphQLTransportWSHandler[Any, Any]):
    max_document_bytes: int = 0  # set by ``handlers``
    max_tokens: int = 0

    async def handle(self) -> None:
        try:
            await super().handle()
        except JSONTooDeep as exc:  # raised by the view's decode_json, after Strawberry's clean-up
            await self.handle_invalid_message(str(exc))
        finally:
            self._leave()

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except Unavailable:
            await self.websocket.close(code=1013, reason="Try again later")
            return
        if self.connection_acknowledged:
            self._join()

    async def revoke(self) -> None:
        self._joined_as = None
        self.context.sign_out()
        for op_id in list(self.operations):
            await self.cleanup_operation(op_id)
        with contextlib.suppress(*_GONE):
            await self.websocket.close(code=4403, reason="Forbidden")

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
                        check_document(payload.get("query"), self.max_document_bytes, self.max_tokens)
                    except DocumentTooLarge as exc:
                        await self.send_message({"id": op_id, "type": "error",
                                                 "payload": [exc.as_graphql_error().formatted]})
                        return
                limit = self.max_subscriptions_per_connection
                within = limit is None or len(self.operations) < limit
                if within and "payload" in message and (not isinstance(payload, dict) or malformed(payload)):
                    await self.handle_invalid_message("Failed to parse message")
                    return
                if within and isinstance(payload, dict):
                    limited = await check_operation(self.context.connection.scope, self.context.signed_in)
                    if limited is not None:  # this operation only: the socket and its others carry on
                        await self.send_message(cast(Any, {"id": op_id, "type": "error",
                                                           "payload": [formatted(limited)]}))
                        return
        await super().handle_subscribe(message)


class LegacyWSHandler(_SignedIn, BaseGraphQLWSHandler[Any, Any]):
    max_document_bytes: int = 0  # set by ``handlers``
    max_tokens: int = 0
    init_timeout_seconds: float = 0.0  # set by ``handlers``
    _init_received = False

    async def handle(self) -> None:
        timeout = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        except JSONTooDeep as exc:  # not ignored like text that is not JSON: closed as graphql-transport-ws does
            await self.websocket.close(code=4400, reason=str(exc))
        finally:
            timeout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timeout
            self._leave()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.init_timeout_seconds)
        if not self._init_received:
            with contextlib.suppress(*_GONE):
                await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_connection_init(self, message: Any) -> None:
        self._init_received = True  # the clock stops, whatever the outcome (as graphql-transport-ws)
        try:
            await super().handle_connection_init(message)
        except Unavailable as busy:
            await self.send_message({"type": "connection_error", "payload": {"message": busy.message, "extensions": {
                "code": busy.code, "retryAfter": busy.retry_after}}})
            await self.websocket.close(code=1011, reason="")
            return
        if self.connection_acknowledged:
            self._join()

    async def revoke(self) -> None:
        self._joined_as = None
        self.context.sign_out()
        for op_id in list(self.tasks):
            await self.cleanup_operation(op_id)
        refused = Unauthenticated()
        with contextlib.suppress(*_GONE):
            await self.send_message(cast(Any, {"type": "connection_error", "payload": {
                "message": refused.message, "extensions": {"code": refused.code}}}))
            await self.websocket.close(code=1011, reason="")

    async def handle_message(self, message: Any) -> None:
        # Ignored, as the legacy handler ignores unknown types: a message with no type to read.
        if not isinstance(message, dict) or not _key(message.get("id")) or not isinstance(message.get("type"), str):
            return
        if message["type"] == "stop" and "id" not in message:
            return  # nothing to stop
        if message.get("type") == "start" and self.connection_acknowledged:
            payload = message.get("payload")
            if "id" not in message:
                return
            if not isinstance(payload, dict) or malformed(payload):
                await self.send_message({"type": "error", "id": message["id"],
                                         "payload": {"message": "Failed to parse message"}})
                return
            try:
                check_document(payload["query"], self.max_document_bytes, self.max_tokens)
            except DocumentTooLarge as exc:
                await self.send_message({"type": "error", "id": message["id"],
                                         "payload": exc.as_graphql_error().formatted})
                return
            limited = await check_operation(self.context.connection.scope, self.context.signed_in)
            if limited is not None:
                await self.send_message(cast(Any, {"type": "error", "id": message["id"],
                                                   "payload": formatted(limited)}))
                return
        await super().handle_message(cast(Any, message))


def handlers(max_document_bytes: int, max_tokens: int, init_timeout_seconds: float) -> tuple[
        type[TransportWSHandler], type[LegacyWSHandler]]:
    """The two handler classes for a view whose documents may be ``max_document_bytes`` and ``max_tokens`` long."""
    limit = {"max_document_bytes": max_document_bytes, "max_tokens": max_tokens}
    return (type("TransportWSHandler", (TransportWSHandler,), limit),
            type("LegacyWSHandler", (LegacyWSHandler,), {**limit, "init_timeout_seconds": init_timeout_seconds}))
