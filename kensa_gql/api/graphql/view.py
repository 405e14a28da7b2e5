"""The ASGI app at /graphql: Strawberry's own view, and the fast path in front of it when it is on.

``KensaGraphQL`` is Strawberry's ASGI view subclassed only for our context (context.py), the
WebSocket sign-in (``on_ws_connect``), size limits, and orjson for ``encode_json``. With
``KENSA_GRAPHQL_FASTPATH=false`` that is all that serves /graphql: HTTP, and both WebSocket
protocols through Strawberry's handlers (protocols.py). With it on (the default), two requests
take the fast path first:

* a POST of a document Strawberry has accepted before is answered by its compiled plan
  (fastpath/post.py); when the plan cannot answer, the same body goes to Strawberry's view;
* a socket that chooses graphql-transport-ws is served by ws/ (no task per socket, lean
  ``videoStatus`` subscribers); legacy graphql-ws stays with Strawberry's handler.

The lower modules get what they need as small frozen objects built here, never the view.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types.unset import UNSET, UnsetType

from kensa_gql import metrics
from kensa_gql.api import console
from kensa_gql.api.error_status import HTTP_STATUS
from kensa_gql.api.graphql import protocols
from kensa_gql.api.graphql.context import Context, authenticate
from kensa_gql.api.graphql.encoding import dumps
from kensa_gql.api.graphql.errors import retry_after
from kensa_gql.api.graphql.fastpath import post
from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments, RememberPrepared, inert
from kensa_gql.api.graphql.limits import DocumentTooLarge, check_document
from kensa_gql.api.graphql.response_media import as_graphql_response_json, wants_graphql_response_json
from kensa_gql.api.graphql.schema import build_schema
from kensa_gql.api.graphql.ws import serve as ws
from kensa_gql.api.graphql.ws.connection import SocketConfig
from kensa_gql.api.payloads import BodyTooLarge, JSONTooDeep, capped, declared_too_large, loads, read_body
from kensa_gql.domain.errors import BadUserInput, Unauthenticated
from kensa_gql.domain.text import check_text
from kensa_gql.settings import Settings

# Strawberry's HTTP refusals by status, as codes of the error tree (api/error_status.py).
_REFUSAL_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}

# Error codes counted by name in kensa_graphql_errors_total; anything else is "other" (bounded).
_KNOWN_CODES = frozenset({*HTTP_STATUS, "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"})

# Room for variables on top of the document itself (a generate request's prompt, mostly).
VARIABLES_ALLOWANCE = 64 * 1024
PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once more, then whatever the client sends next (a disconnect)."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


class KensaGraphQL(GraphQL[Context, None]):
    """GraphQL over HTTP (GET and POST) and both WebSocket subprotocols."""

    websocket_adapter_class = protocols.SocketAdapter

    def __init__(self, schema: Schema, *, max_document_bytes: int, max_tokens: int, graphiql: bool,
                 max_subscriptions_per_connection: int, allowed_origins: Sequence[str],
                 connection_init_timeout_seconds: float, documents: PreparedDocuments | None) -> None:
        super().__init__(schema, graphql_ide="graphiql" if graphiql else None, allow_queries_via_get=True,
                         # and subscriptions over HTTP: a POST accepting multipart/mixed (Apollo Client)
                         subscription_protocols=(*PROTOCOLS, MULTIPART_SUBSCRIPTION_PROTOCOL),
                         connection_init_wait_timeout=timedelta(seconds=connection_init_timeout_seconds),
                         max_subscriptions_per_connection=max_subscriptions_per_connection,
                         allowed_origins=allowed_origins)
        self.graphql_transport_ws_handler_class, self.graphql_ws_handler_class = protocols.handlers(
            max_document_bytes, max_tokens, connection_init_timeout_seconds)
        self.max_document_bytes = max_document_bytes
        self.max_tokens = max_tokens
        self.max_body_bytes = max_document_bytes + VARIABLES_ALLOWANCE
        # The fast path, when on: what it needs, and nothing else of the view's.
        self.documents = documents
        self.post_answers = None if documents is None else post.PostAnswers(schema, documents, Context)
        self.sockets = None if documents is None else SocketConfig(
            schema=schema, documents=documents, max_document_bytes=max_document_bytes, max_tokens=max_tokens,
            max_operations=max_subscriptions_per_connection, init_timeout_seconds=connection_init_timeout_seconds,
            allowed_origins=tuple(allowed_origins))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            offered: list[str] = scope.get("subprotocols") or []
            # Strawberry's choice (pick_websocket_subprotocol): the first offered that it speaks.
            chosen = next((p for p in offered if p in PROTOCOLS), None)
            if self.sockets is not None and chosen == GRAPHQL_TRANSPORT_WS_PROTOCOL:
                await ws.serve(self.sockets, scope, receive, send)
            else:
                await super().__call__(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if wants_graphql_response_json(scope):
            send = as_graphql_response_json(send)
        if declared_too_large(scope, self.max_body_bytes):
            await self._too_large(DocumentTooLarge(self.max_body_bytes), scope, receive, send)
            return
        try:
            if scope["method"] == "POST" and self.post_answers is not None:
                # Read here, capped, for the fast path; Strawberry is handed the same bytes.
                body = await read_body(receive, self.max_body_bytes)
                if await post.answer(self.post_answers, scope, receive, send, body):
                    return
                body_receive = _replay(body, receive)
            else:
                body_receive = capped(receive, self.max_body_bytes)
            # Strawberry's ASGI __call__, but its refusals (bad JSON, no query, a batch, 405...)
            # are GraphQL errors as the GraphQL over HTTP spec has them, not plain text.
            try:
                response = await self.run(Request(scope, receive=body_receive))
            except HTTPException as refused:
                response = self._refusal(refused, scope["method"])
            await response(scope, body_receive, send)
        except BodyTooLarge:
            await self._too_large(DocumentTooLarge(self.max_body_bytes), scope, receive, send)
        except DocumentTooLarge as exc:
            await self._too_large(exc, scope, receive, send)
        except JSONTooDeep as exc:  # from decode_json: the body, or GET's variables or extensions
            error = GraphQLError(str(exc), extensions={"code": "BAD_USER_INPUT"})
            await self._error(400, error, scope, receive, send)
        except BadUserInput as exc:  # from parse_http_body: resolvers' errors never propagate this far
            await self._error(400, GraphQLError(exc.message, extensions={"code": exc.code}), scope, receive, send)

    def _refusal(self, refused: HTTPException, method: str) -> Response:
        status, allow = refused.status_code, "GET, POST"
        if status == 400 and method == "GET" and "not allowed when using GET" in refused.reason:
            status, allow = 405, "POST"  # a mutation over GET: the spec's 405, pointing at POST
        error = GraphQLError(refused.reason, extensions={"code": _REFUSAL_CODES.get(status, "BAD_USER_INPUT")})
        return Response(json.dumps({"errors": [error.formatted]}), status_code=status, media_type="application/json",
                        headers={"Allow": allow} if status == 405 else None)

    async def _too_large(self, refused: DocumentTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
        await self._error(413, refused.as_graphql_error(), scope, receive, send)

    async def _error(self, status: int, error: GraphQLError, scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(json.dumps({"errors": [error.formatted]}), status_code=status,
                            media_type="application/json")
        await response(scope, receive, send)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[
            GraphQLRequestData]:
        if request.method == "GET":
            check_document(request.query_params.get("query"), self.max_document_bytes, self.max_tokens)
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            check_document(item.query, self.max_document_bytes, self.max_tokens)
            # Echoed in Strawberry's errors ("Unknown operation named ..."): it must be text we can send.
            for field, value in (("query", item.query), ("operationName", item.operation_name)):
                if isinstance(value, str):
                    check_text(value, field)
        return data

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return Context(request)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Sign the socket in at connection_init: the payload's Authorization, else the upgrade's header.

        Unavailable (the database cannot say who this is now) goes up to the handlers in
        protocols.py, which tell the client to come back rather than that it is forbidden.
        """
        try:
            principal = await authenticate(context.connection, context.connection_params)
        except Unauthenticated as refused:
            # graphql-transport-ws closes 4403 "Forbidden"; legacy graphql-ws sends this payload
            # in connection_error, then closes.
            raise ConnectionRejectionError({"message": refused.message,
                                            "extensions": {"code": refused.code}}) from refused
        context.sign_in(principal)
        unset: UnsetType = UNSET
        return unset

    async def render_graphql_ide(self, request: Request) -> Response:
        # Strawberry's page loads React and GraphiQL from a CDN; ours, the same files shipped with us.
        return console.graphiql_response()

    def decode_json(self, data: str | bytes) -> object:
        # Every JSON Strawberry reads: POST bodies, GET's variables, both WebSocket protocols' messages.
        return loads(data)

    def create_response(self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
                        sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        # A backing service that cannot serve now (the database locked or down) is a 503 with
        # Retry-After, as on REST, so proxies and clients back off instead of seeing a 200.
        results = response_data if isinstance(response_data, list) else [response_data]
        errors = [e for r in results for e in (r.get("errors") or [])]
        for error in errors:
            metrics.graphql_error(_code(error))
        wait = retry_after(errors)
        if wait is not None and response.status_code == 200:
            response.status_code = 503
            response.headers["Retry-After"] = str(wait)
        return response

    def encode_json(self, data: Any) -> str:
        return dumps(data)


def _code(error: Any) -> str:
    code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code in _KNOWN_CODES else "other"


def graphql_app(settings: Settings) -> KensaGraphQL:
    """The /graphql app for ``settings``; mount it with Route and WebSocketRoute (not Mount)."""
    documents = PreparedDocuments() if settings.graphql_fastpath else None
    # RememberPrepared last: its on_execute runs only for documents every other extension accepted.
    schema = build_schema(settings, extra_extensions=() if documents is None else (
        lambda: RememberPrepared(documents),))
    if documents is not None:
        documents.enabled = inert(schema)
    return KensaGraphQL(schema, max_document_bytes=settings.graphql_max_document_bytes,
                        max_tokens=settings.graphql_max_tokens,
                        graphiql=settings.graphiql,
                        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
                        allowed_origins=settings.cors_origins,
                        connection_init_timeout_seconds=settings.graphql_connection_init_timeout_seconds,
                        documents=documents)
