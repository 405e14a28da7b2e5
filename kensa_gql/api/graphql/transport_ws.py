"""graphql-transport-ws (the graphql-ws library's protocol), as Strawberry speaks it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from starlette.types import Scope, Send
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from kensa_gql.api.graphql import subscribers
from kensa_gql.api.graphql.connection import ACK, Connection, Operation
from kensa_gql.api.graphql.fanout import encode_json

if TYPE_CHECKING:
    from kensa_gql.api.graphql.view import KensaGraphQL

log = logging.getLogger("kensa_gql.websocket")


class TransportConnection(Connection):
    """graphql-transport-ws, as Strawberry's BaseGraphQLTransportWSHandler speaks it."""

    __slots__ = ()

    def __init__(self, view: KensaGraphQL, scope: Scope, send: Send) -> None:
        super().__init__(view, scope, send)
        # Strawberry's init timeout without its task: the receive loop waits until the deadline.
        self.deadline = asyncio.get_running_loop().time() + view.connection_init_wait_timeout.total_seconds()

    async def timed_out(self) -> None:
        await self.close(4408, "Connection initialisation timeout")

    async def received(self, text: str | None) -> None:
        if text is None:
            await self.close(4400, "WebSocket message type must be text")
            return
        try:
            data = json.loads(text)
        except ValueError:
            await self.close(4400, "WebSocket message must be valid JSON")
            return
        await self.handle(data)

    async def handle(self, data: Any) -> None:
        try:
            if not isinstance(data, dict):
                raise KeyError("type")
            kind = data["type"]
            if kind == "connection_init":
                self.deadline = None  # received: the clock stops, whatever the outcome
                await self.init(data)
            elif kind == "ping":
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

    async def init(self, data: dict[str, Any]) -> None:
        payload = data.get("payload", {})
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
        elif self.acknowledged:  # a refused init closed the socket: only an accepted one can come before
            await self.close(4429, "Too many initialisation requests")
        elif await self.authenticate(payload) is not None:
            await self.close(4403, "Forbidden")
        else:
            await self.send_text(ACK)
            self.acknowledged = True

    async def subscribe(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        op_id, payload = data["id"], data["payload"]
        if not isinstance(payload, dict):
            raise KeyError("payload")  # malformed, like a missing payload
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
