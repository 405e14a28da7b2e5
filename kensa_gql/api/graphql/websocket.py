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
import contextlib
import json
import logging
import types
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from strawberry.http.websocket_origin import is_same_origin, normalize_origin
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from kensa_gql.adapters.pubsub import Watcher
from kensa_gql.api.graphql import subscribers
from kensa_gql.api.graphql.context import Context, authenticate
from kensa_gql.api.graphql.fanout import dumps, encode_json
from kensa_gql.domain.errors import Unauthenticated
from kensa_gql.services.accounts import Principal

if TYPE_CHECKING:
    from kensa_gql.api.graphql.view import KensaGraphQL

log = logging.getLogger("kensa_gql.websocket")
PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
_ACK = '{"type":"connection_ack"}'


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
        await connection.run(receive)
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


class Operation:
    """An operation that executes through Strawberry: its task, until it has sent its last message."""

    __slots__ = ("completed", "id", "task")

    def __init__(self, op_id: str) -> None:
        self.id = op_id
        self.completed = False
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Connection:
    """One socket: who is on it, its operations, and how to send to it."""

    __slots__ = ("_send", "acknowledged", "closed", "operations", "principal", "scope", "view")
    legacy = False

    def __init__(self, view: KensaGraphQL, scope: Scope, send: Send) -> None:
        self.view = view
        self.scope = scope
        self._send = send
        self.principal: Principal | None = None
        self.acknowledged = False
        self.closed = False
        self.operations: dict[str, Operation | subscribers.Subscriber] = {}

    # -- what operations need ------------------------------------------------------------------

    def context(self) -> Context:
        """A context for one operation: the socket's identity and the app's services (nothing per operation)."""
        context = Context(HTTPConnection(self.scope))
        if self.principal is not None:
            context.sign_in(self.principal)
        return context

    @property
    def watchers(self) -> dict[str, set[Watcher]]:
        registry: dict[str, set[Watcher]] = self.scope["app"].state.events.watchers
        return registry

    def forget(self, op: Operation | subscribers.Subscriber) -> None:
        """Free the operation's id (before its last message, so the client may reuse it at once)."""
        if self.operations.get(op.id) is op:
            del self.operations[op.id]

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:  # the client is gone (uvicorn's ClientDisconnected): the receive loop ends it
            self.closed = True

    def push(self, text: str) -> Awaitable[None] | None:
        """Send ``text`` now, without a task, if the socket takes it at once (the usual case).

        ASGI's send is a coroutine that completes without suspending unless the transport's
        buffer is full; stepped here once, it has then sent. If it suspends (a slow consumer),
        what is returned finishes the send and must be awaited, by a task.
        """
        if self.closed:
            return None
        steps = self._send({"type": "websocket.send", "text": text}).__await__()
        try:
            waiting = steps.send(None)
        except StopIteration:
            return None
        except OSError:
            self.closed = True
            return None
        return _resumed(steps, waiting)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    # -- the protocol --------------------------------------------------------------------------

    def next_text(self, op_id: str, payload: dict[str, Any]) -> str:
        return encode_json({"id": op_id, "type": "next", "payload": payload})

    def complete_text(self, op_id: str) -> str:
        return encode_json({"id": op_id, "type": "complete"})

    def next_encoded(self, op_id: str, data: str) -> str:
        """``next_text`` for data already encoded (``data``: its JSON), byte for byte."""
        return f'{{"id":{dumps(op_id)},"type":"next","payload":{{"data":{data}}}}}'

    async def run(self, receive: Receive) -> None:
        raise NotImplementedError

    async def authenticate(self, params: dict[str, Any] | None) -> bool:
        """Sign the socket in from connection_init (the payload's Authorization, else the upgrade's)."""
        try:
            self.principal = await authenticate(HTTPConnection(self.scope), params)
        except Unauthenticated:
            return False
        return True

    def document_error(self, payload: dict[str, Any]) -> GraphQLError | None:
        return self.view.document_error(payload.get("query"))

    def limit_reached(self) -> bool:
        limit = self.view.max_subscriptions_per_connection
        # As Strawberry: every operation in flight counts, queries and mutations included.
        return limit is not None and len(self.operations) >= limit

    def begin(self, op_id: str, payload: dict[str, Any]) -> None:
        query, variables, name = payload["query"], payload.get("variables"), payload.get("operationName")
        op = Operation(op_id)
        self.operations[op_id] = op
        op.task = asyncio.create_task(self._operation(op, query, variables, name))
        op.task.add_done_callback(_retrieved)

    async def _operation(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        subscriber = await subscribers.start(self, op.id, query, variables, name)
        if subscriber is None:
            await self.execute(op, query, variables, name)
            return
        if self.operations.get(op.id) is not op:  # completed by the client meanwhile
            return
        op.completed = True  # the subscriber speaks for the operation from now on
        self.operations[op.id] = subscriber
        await subscriber.follow()

    async def execute(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """The socket is gone: every operation ends, quietly, and their tasks are awaited."""
        self.closed = True
        operations, self.operations = self.operations, {}
        tasks = [op.task for op in operations.values() if op.task is not None]
        for op in operations.values():
            op.cancel()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


class TransportConnection(Connection):
    """graphql-transport-ws, as Strawberry's BaseGraphQLTransportWSHandler speaks it."""

    __slots__ = ()

    async def run(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.view.connection_init_wait_timeout.total_seconds()
        initialised = False
        while not self.closed:
            if initialised:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    await self.close(4408, "Connection initialisation timeout")
                    return
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            text = message.get("text")
            if text is None:
                await self.close(4400, "WebSocket message type must be text")
                return
            try:
                data = json.loads(text)
            except ValueError:
                await self.close(4400, "WebSocket message must be valid JSON")
                return
            initialised = await self.handle(data) or initialised

    async def handle(self, data: Any) -> bool:
        """One client message; True once connection_init has been received."""
        try:
            if not isinstance(data, dict):
                raise KeyError("type")
            kind = data["type"]
            if kind == "connection_init":
                await self.init(data)
                return True
            if kind == "ping":
                await self.send_text('{"type":"pong"}')
            elif kind == "pong":
                pass
            elif kind == "subscribe":
                await self.subscribe(data)
            elif kind == "complete":
                op = self.operations.pop(data["id"], None)
                if op is not None:
                    op.cancel()
            else:
                await self.close(4400, f"Unknown message type: {kind}")
        except KeyError:
            await self.close(4400, "Failed to parse message")
        return False

    async def init(self, data: dict[str, Any]) -> None:
        payload = data.get("payload", {})
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
        elif self.acknowledged:  # a refused init closed the socket: only an accepted one can come before
            await self.close(4429, "Too many initialisation requests")
        elif not await self.authenticate(payload):
            await self.close(4403, "Forbidden")
        else:
            await self.send_text(_ACK)
            self.acknowledged = True

    async def subscribe(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        op_id, payload = data["id"], data["payload"]
        if op_id in self.operations:
            await self.close(4409, f"Subscriber for {op_id} already exists")
            return
        error = self.document_error(payload)
        if error is None and self.limit_reached():
            error = GraphQLError("Subscription limit reached")
        if error is not None:  # an error for this operation only: the socket's others carry on
            await self.send_text(encode_json({"id": op_id, "type": "error", "payload": [error.formatted]}))
            return
        self.begin(op_id, payload)

    async def execute(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        """Strawberry's run_operation: each result as ``next``, then ``complete``."""
        try:
            source = await self.view.schema.stream(query, variable_values=variables, context_value=self.context(),
                                                   root_value=None, operation_name=name)
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        reason = BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(result.errors[0])
                        if reason:
                            self.forget(op)
                            await self.close(4400, reason)
                            return
                        await self._last(op, {"id": op.id, "type": "error",
                                              "payload": [e.formatted for e in result.errors]})
                        return
                    if not isinstance(result, ExecutionResult):  # @defer/@stream: no wire form here
                        error = GraphQLError("Incremental delivery is not supported over graphql-transport-ws")
                        await self._last(op, {"id": op.id, "type": "error", "payload": [error.formatted]})
                        return
                    first = False
                    await self.send_text(self.next_text(op.id, subscribers.payload_of(result)))
            await self._last(op, {"id": op.id, "type": "complete"})
        except Exception as error:
            log.exception("Exception in worker task", exc_info=error)
            with contextlib.suppress(Exception):
                await self._last(op, {"id": op.id, "type": "complete"})
            raise

    async def _last(self, op: Operation, message: dict[str, Any]) -> None:
        if op.completed:
            return
        op.completed = True
        self.forget(op)
        await self.send_text(encode_json(message))


class LegacyConnection(Connection):
    """The legacy graphql-ws (subscriptions-transport-ws), as Strawberry's BaseGraphQLWSHandler speaks it."""

    __slots__ = ()
    legacy = True

    def next_text(self, op_id: str, payload: dict[str, Any]) -> str:
        return encode_json({"type": "data", "id": op_id, "payload": payload})

    def complete_text(self, op_id: str) -> str:
        return encode_json({"type": "complete", "id": op_id})

    def next_encoded(self, op_id: str, data: str) -> str:
        return f'{{"type":"data","id":{dumps(op_id)},"payload":{{"data":{data}}}}}'

    async def run(self, receive: Receive) -> None:
        while not self.closed:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            text = message.get("text")
            if text is None:
                await self.close(1002, "WebSocket message type must be text")
                return
            try:
                data = json.loads(text)
            except ValueError:
                continue  # as Strawberry: the legacy protocol ignores what it cannot parse
            if isinstance(data, dict):
                await self.handle(data)

    async def handle(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        try:
            if kind == "connection_init":
                await self.init(data)
            elif kind == "connection_terminate":
                await self.close(1000, "")
            elif kind == "start":
                await self.start(data)
            elif kind == "stop":
                await self.stop(data["id"])
        except (KeyError, TypeError):
            pass  # a malformed message: ignored, like any other the protocol does not know

    async def init(self, data: dict[str, Any]) -> None:
        payload = data.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_text('{"type":"connection_error"}')
            await self.close(1000, "")
        elif not await self.authenticate(payload):
            error = Unauthenticated()
            await self.send_text(encode_json({"type": "connection_error", "payload": {
                "message": error.message, "extensions": {"code": error.code}}}))
            await self.close(1011, "")
        else:
            await self.send_text(_ACK)
            self.acknowledged = True

    async def start(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        op_id, payload = data["id"], data["payload"]
        error = self.document_error(payload)
        if error is not None:
            await self.send_text(encode_json({"type": "error", "id": op_id, "payload": error.formatted}))
            return
        if op_id in self.operations:  # a restarted id ends the operation that had it
            await self.stop(op_id)
        if self.limit_reached():
            await self.send_text(encode_json({"type": "error", "id": op_id,
                                              "payload": {"message": "Subscription limit reached"}}))
            return
        self.begin(op_id, payload)

    async def stop(self, op_id: str) -> None:
        """As Strawberry: the operation ends, and says ``complete`` unless it already has."""
        op = self.operations.pop(op_id, None)
        if op is None:
            return
        task = op.task
        op.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        if not op.completed:
            op.completed = True
            await self.send_text(self.complete_text(op_id))

    async def execute(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        """Strawberry's handle_async_results: each result as ``data``, then ``complete``."""
        try:
            source = await self.view.schema.subscribe(query=query, variable_values=variables, operation_name=name,
                                                      context_value=self.context(), root_value=None)
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        op.completed = True
                        await self.send_text(encode_json({"type": "error", "id": op.id,
                                                          "payload": result.errors[0].formatted}))
                        return
                    first = False
                    await self.send_text(self.next_text(op.id, subscribers.payload_of(result)))
            op.completed = True
            await self.send_text(self.complete_text(op.id))
        finally:
            # Over, whether it completed, failed before executing or was stopped (stop says complete).
            self.forget(op)


def _retrieved(task: asyncio.Task[None]) -> None:
    # Exceptions are logged where they happen; retrieved here so asyncio does not log them again.
    if not task.cancelled():
        task.exception()


@types.coroutine
def _resumed(steps: Generator[Any, Any, Any], waiting: Any) -> Generator[Any, Any, None]:
    """Awaits the rest of a send that ``Connection.push`` began and that suspended on ``waiting``."""
    while True:
        try:
            value = yield waiting
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # cancellation goes into the send, as with await
            try:
                waiting = steps.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = steps.send(value)
            except StopIteration:
                return
