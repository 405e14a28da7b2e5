"""The legacy graphql-ws (subscriptions-transport-ws, Apollo's old protocol), as Strawberry speaks it."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from kensa_gql.api.graphql import subscribers
from kensa_gql.api.graphql.connection import ACK, Connection, Operation
from kensa_gql.api.graphql.fanout import dumps, encode_json


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

    async def received(self, text: str | None) -> None:
        if text is None:
            await self.close(1002, "WebSocket message type must be text")
            return
        try:
            data = json.loads(text)
        except ValueError:
            return  # as Strawberry: the legacy protocol ignores what it cannot parse
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
        elif (refused := await self.authenticate(payload)) is not None:
            await self.send_text(encode_json({"type": "connection_error", "payload": {
                "message": refused.message, "extensions": {"code": refused.code}}}))
            await self.close(1011, "")
        else:
            await self.send_text(ACK)
            self.acknowledged = True

    async def start(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        op_id, payload = data["id"], data["payload"]
        if not isinstance(payload, dict):
            raise KeyError("payload")  # malformed, like a missing payload
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
