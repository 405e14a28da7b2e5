"""One graphql-transport-ws socket on the fast path: who is on it, its operations, the protocol.

It behaves as Strawberry's BaseGraphQLTransportWSHandler does (the close codes, the messages,
their order and JSON; tests/api/graphql/fastpath/test_ws_differential.py plays the same scripts
against both), with two differences in what it costs: no task per socket (serve.py's receive
loop is the socket's only frame), and a ``videoStatus`` subscription to a remembered document
becomes a lean ``Subscriber`` (subscribers.py) rather than a task and a stream. Everything else
(queries and mutations over the socket, documents not seen before, refused subscriptions)
executes through ``schema.stream``, with the schema's extensions and error rendering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections.abc import Awaitable, Generator
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.types import Scope, Send
from strawberry import Schema
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from kensa_gql import metrics
from kensa_gql.api.graphql.context import Context, authenticate, presented_key, sessions
from kensa_gql.api.graphql.encoding import dumps
from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments
from kensa_gql.api.graphql.fastpath.strawberry_internals import pre_execution_close_reason
from kensa_gql.api.graphql.limits import DocumentTooLarge, check_document
from kensa_gql.api.graphql.ws import subscribers
from kensa_gql.api.graphql.ws.frames import malformed, next_text, payload_of
from kensa_gql.api.payloads import JSONTooDeep, loads
from kensa_gql.api.ratelimits import check_operation, formatted
from kensa_gql.domain.errors import Unauthenticated, Unavailable
from kensa_gql.domain.watching import Watchers
from kensa_gql.services.accounts import Principal

log = logging.getLogger("kensa_gql.websocket")
ACK = '{"type":"connection_ack"}'


@dataclass(frozen=True, slots=True)
class SocketConfig:
    """What every socket of the /graphql app shares (given by the view, never the view itself)."""

    schema: Schema
    documents: PreparedDocuments
    max_document_bytes: int
    max_tokens: int
    max_operations: int | None
    init_timeout_seconds: float
    allowed_origins: tuple[str, ...]


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

    __slots__ = ("_send", "acknowledged", "closed", "config", "deadline", "key", "operations", "principal",
                 "scope")

    def __init__(self, config: SocketConfig, scope: Scope, send: Send) -> None:
        self.config = config
        self.scope = scope
        self._send = send
        self.principal: Principal | None = None
        self.key: str | None = None  # the API key it signed in with, while it is in the app's sessions
        self.acknowledged = False
        self.closed = False
        # Strawberry's init timeout without its task: the receive loop waits until this loop time.
        self.deadline: float | None = asyncio.get_running_loop().time() + config.init_timeout_seconds
        self.operations: dict[str, Operation | subscribers.Subscriber] = {}

    # -- what operations need ------------------------------------------------------------------

    def context(self) -> Context:
        """A context for one operation: the socket's identity and the app's services (nothing per operation)."""
        context = Context(HTTPConnection(self.scope))
        if self.principal is not None:
            context.sign_in(self.principal)
        return context

    @property
    def schema(self) -> Schema:
        return self.config.schema

    @property
    def watchers(self) -> Watchers:
        registry: Watchers = self.scope["app"].state.deps.watchers
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

    async def timed_out(self) -> None:
        await self.close(4408, "Connection initialisation timeout")

    async def received(self, text: str | None) -> None:
        """One message from the client (None: not a text message)."""
        if self.closed:  # revoked (or closing): nothing more runs on this socket
            return
        if text is None:
            await self.close(4400, "WebSocket message type must be text")
            return
        try:
            data = loads(text)
        except JSONTooDeep as exc:
            await self.close(4400, str(exc))
            return
        except ValueError:
            await self.close(4400, "WebSocket message must be valid JSON")
            return
        try:
            if not isinstance(data, dict):
                raise KeyError("type")
            kind = data["type"]
            if kind == "connection_init":
                self.deadline = None  # received: the clock stops, whatever the outcome
                await self._init(data)
            elif kind == "ping":
                await self.send_text('{"type":"pong"}')
            elif kind == "pong":
                pass
            elif kind == "subscribe":
                await self._subscribe(data)
            elif kind == "complete":
                op_id = data["id"]
                hash(op_id)  # an id that cannot be a key is malformed, operations or not
                op = self.operations.pop(op_id, None)
                if op is not None:
                    op.cancel()
            else:
                await self.close(4400, f"Unknown message type: {kind}")
        except (KeyError, TypeError):  # TypeError: an id that cannot be a key (as protocols.py screens)
            await self.close(4400, "Failed to parse message")

    async def _init(self, data: dict[str, Any]) -> None:
        payload = data.get("payload", {})
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
        elif self.acknowledged:  # a refused init closed the socket: only an accepted one can come before
            await self.close(4429, "Too many initialisation requests")
        else:
            connection = HTTPConnection(self.scope)
            try:
                self.principal = await authenticate(connection, payload)
            except Unauthenticated:
                await self.close(4403, "Forbidden")
                return
            except Unavailable:  # the database cannot say who this is now: 1013, "Try Again Later"
                await self.close(1013, "Try again later")
                return
            self.key = presented_key(connection, payload)
            if self.key is not None:
                sessions(connection).join(self.key, self)
            await self.send_text(ACK)
            self.acknowledged = True

    async def revoke(self) -> None:
        """Its key no longer signs in: ended as a refused connection_init is, nothing left running."""
        self.key = None  # the sessions have let it go already
        self.principal = None
        for op in self.operations.values():
            op.cancel()
        await self.close(4403, "Forbidden")

    async def _subscribe(self, data: dict[str, Any]) -> None:
        # Strawberry's order: acknowledged, the id, a duplicate, (the size), the limit, the payload.
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        op_id = data["id"]
        if op_id in self.operations:
            await self.close(4409, f"Subscriber for {op_id} already exists")
            return
        payload = data.get("payload")
        error: GraphQLError | None = None
        if isinstance(payload, dict):
            try:
                check_document(payload.get("query"), self.config.max_document_bytes, self.config.max_tokens)
            except DocumentTooLarge as exc:
                error = exc.as_graphql_error()
        limit = self.config.max_operations
        # As Strawberry: every operation in flight counts, queries and mutations included.
        if error is None and limit is not None and len(self.operations) >= limit:
            error = GraphQLError("Subscription limit reached")
        if error is not None:  # an error for this operation only: the socket's others carry on
            await self.send_text(dumps({"id": op_id, "type": "error", "payload": [error.formatted]}))
            return
        if not isinstance(payload, dict) or malformed(payload):
            raise KeyError("payload")  # missing or malformed (protocols.py screens Strawberry's alike)
        limited = await check_operation(self.scope, self.principal)
        if limited is not None:  # as protocols.py: an error for this operation, the socket stays open
            await self.send_text(dumps({"id": op_id, "type": "error", "payload": [formatted(limited)]}))
            return
        query = payload["query"]
        op = Operation(op_id)
        self.operations[op_id] = op
        op.task = asyncio.create_task(self._operation(op, query, payload.get("variables"),
                                                      payload.get("operationName")))
        op.task.add_done_callback(_retrieved)

    async def _operation(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        try:
            subscriber = await subscribers.start(self, self.config.documents, op.id, query, variables, name)
        except Exception:
            # Whatever the lean path trips on, Strawberry's path answers it (and logs a fault of ours).
            log.exception("a lean subscriber could not start; Strawberry runs the operation")
            subscriber = None
        if subscriber is None:
            await self._execute(op, query, variables, name)
            return
        if self.operations.get(op.id) is not op:  # completed by the client meanwhile
            return
        metrics.graphql_operation(name if isinstance(name, str) else None, "subscription")
        op.completed = True  # the subscriber speaks for the operation from now on
        self.operations[op.id] = subscriber
        await subscriber.follow()

    async def _execute(self, op: Operation, query: Any, variables: Any, name: Any) -> None:
        """Strawberry's run_operation: each result as ``next``, then ``complete``."""
        try:
            source = await self.config.schema.stream(query, variable_values=variables, context_value=self.context(),
                                                     root_value=None, operation_name=name)
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        reason = pre_execution_close_reason(result.errors[0])
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
                    await self.send_text(next_text(op.id, payload_of(result)))
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
        await self.send_text(dumps(message))

    async def shutdown(self) -> None:
        """The socket is gone: every operation ends, quietly, and their tasks are awaited."""
        self.closed = True
        if self.key is not None:
            sessions(HTTPConnection(self.scope)).leave(self.key, self)
            self.key = None
        operations, self.operations = self.operations, {}
        tasks = [op.task for op in operations.values() if op.task is not None]
        for op in operations.values():
            op.cancel()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


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

