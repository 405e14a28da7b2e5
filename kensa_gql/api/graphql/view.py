"""The ASGI app at /graphql: Strawberry's view with our context, authentication and size limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter
from graphql import GraphQLError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from kensa_gql.api.graphql import fanout, post, websocket
from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.schema import build_schema
from kensa_gql.settings import Settings

# Room for variables on top of the document itself (a generate request's prompt, mostly).
VARIABLES_ALLOWANCE = 64 * 1024
# Browsers send connection_init at once; an idle unauthenticated socket should not linger.
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)


class DocumentTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request is larger than {limit} bytes")
        self.limit = limit

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(str(self), extensions={"code": "PAYLOAD_TOO_LARGE"})


def _check_document(query: object, limit: int) -> None:
    # Characters first: a string with fewer characters than the limit / 4 cannot exceed it.
    if isinstance(query, str) and len(query) * 4 > limit and len(query.encode()) > limit:
        raise DocumentTooLarge(limit)


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, as Starlette's ``Request.body`` reads it; _BodyTooLarge past ``limit``."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def _capped(receive: Receive, limit: int) -> Receive:
    """A receive that raises _BodyTooLarge once more than ``limit`` bytes of body have come."""
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge()
        return message

    return capped


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once more, then whatever the client sends next (a disconnect)."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


class KensaGraphQL(GraphQL[Context, None]):
    """GraphQL over HTTP (GET and POST) and both WebSocket subprotocols (websocket.py speaks those)."""

    def __init__(self, schema: BaseSchema, *, max_document_bytes: int, graphiql: bool,
                 max_subscriptions_per_connection: int, allowed_origins: Sequence[str]) -> None:
        super().__init__(schema, graphql_ide="graphiql" if graphiql else None, allow_queries_via_get=True,
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
                         connection_init_wait_timeout=CONNECTION_INIT_TIMEOUT,
                         max_subscriptions_per_connection=max_subscriptions_per_connection,
                         allowed_origins=allowed_origins)
        self.max_document_bytes = max_document_bytes
        self.max_body_bytes = max_document_bytes + VARIABLES_ALLOWANCE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await websocket.serve(self, scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._too_large(self.max_body_bytes, scope, receive, send)
            return
        try:
            if scope["method"] == "POST":
                # Read here, capped, for the shortcut; Strawberry is handed the same bytes.
                body = await _read_body(receive, self.max_body_bytes)
                if await post.answer(self, scope, receive, send, body):
                    return
                body_receive = _replay(body, receive)
            else:
                body_receive = _capped(receive, self.max_body_bytes)
            await super().__call__(scope, body_receive, send)
        except _BodyTooLarge:
            await self._too_large(self.max_body_bytes, scope, receive, send)
        except DocumentTooLarge as exc:
            await self._too_large(exc.limit, scope, receive, send)

    async def _too_large(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"errors": [DocumentTooLarge(limit).as_graphql_error().formatted]}
        response = Response(json.dumps(body), status_code=413, media_type="application/json")
        await response(scope, receive, send)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[
            GraphQLRequestData]:
        if request.method == "GET":
            _check_document(request.query_params.get("query"), self.max_document_bytes)
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            _check_document(item.query, self.max_document_bytes)
        return data

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return Context(request)

    def document_error(self, query: object) -> GraphQLError | None:
        """The error for a WebSocket operation whose document is over the size limit, else None."""
        try:
            _check_document(query, self.max_document_bytes)
        except DocumentTooLarge as exc:
            return exc.as_graphql_error()
        return None

    def encode_json(self, data: Any) -> str:
        return fanout.encode_json(data)


def graphql_app(settings: Settings) -> KensaGraphQL:
    """The /graphql app for ``settings``; mount it with Route and WebSocketRoute (not Mount)."""
    return KensaGraphQL(build_schema(settings), max_document_bytes=settings.graphql_max_document_bytes,
                        graphiql=settings.graphiql,
                        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
                        allowed_origins=settings.cors_origins)
