"""One GraphQL WebSocket: who is on it, its operations, and how to send to it (both subprotocols)."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.types import Scope, Send

from kensa_gql.adapters.pubsub import Watcher
from kensa_gql.api.graphql import subscribers
from kensa_gql.api.graphql.context import Context, authenticate
from kensa_gql.api.graphql.fanout import dumps, encode_json
from kensa_gql.domain.errors import Unauthenticated
from kensa_gql.services.accounts import Principal

if TYPE_CHECKING:
    from kensa_gql.api.graphql.view import KensaGraphQL


ACK = '{"type":"connection_ack"}'


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

    __slots__ = ("_send", "acknowledged", "closed", "deadline", "operations", "principal", "scope", "view")
    legacy = False

    def __init__(self, view: KensaGraphQL, scope: Scope, send: Send) -> None:
        self.view = view
        self.scope = scope
        self._send = send
        self.principal: Principal | None = None
        self.acknowledged = False
        self.closed = False
        self.deadline: float | None = None  # the loop time by which connection_init must have come
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

    async def received(self, text: str | None) -> None:
        """One message from the client (None: not a text message)."""
        raise NotImplementedError

    async def timed_out(self) -> None:
        """No connection_init by the deadline."""

    async def authenticate(self, params: dict[str, Any] | None) -> Unauthenticated | None:
        """Sign the socket in from connection_init (the payload's Authorization, else the upgrade's);
        the refusal, if it is refused."""
        try:
            self.principal = await authenticate(HTTPConnection(self.scope), params)
        except Unauthenticated as refused:
            return refused
        return None

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
