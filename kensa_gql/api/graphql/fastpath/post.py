"""POST /graphql for documents Strawberry has accepted before, straight from the ASGI messages.

Strawberry's view turns every request into a Starlette request and response, a sub-response,
its request adapter and a result dictionary before the JSON goes out. For a remembered query
(see documents.py) none of that can change the answer, so ``answer`` reads what it needs from
the scope, runs the operation's compiled plan (compiled.py) and sends the JSON that Strawberry
would send: status 200, ``content-length`` then ``content-type: application/json``, the body
encoded by orjson exactly as the view's ``encode_json`` does.

Whenever the plan cannot answer (it does not handle the operation, the variables do not coerce,
a resolver raised, a value needs graphql-core's care), ``answer`` sends nothing and returns
False: the view hands the same body to Strawberry, which runs the operation from scratch (queries
have no side effects to repeat). Each outcome is counted in ``PreparedDocuments.counts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import OperationDefinitionNode, OperationType
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from strawberry import Schema

from kensa_gql import logs, metrics, tracing
from kensa_gql.api.graphql.fastpath.compiled import Fallback, NotCompiled
from kensa_gql.api.graphql.fastpath.documents import Prepared, PreparedDocuments
from kensa_gql.api.payloads import MAX_JSON_DEPTH, too_deep

_STREAMING = (b"multipart/mixed", b"text/event-stream")
_JSON = b"application/json"
_FIELDS = frozenset({"query", "variables", "operationName", "extensions"})
COMPILED = "compiled"


@dataclass(frozen=True, slots=True)
class PostAnswers:
    """What answering a POST takes: the schema, its remembered documents, and the context the
    view would make for the request (``Context(request)``)."""

    schema: Schema
    documents: PreparedDocuments
    context: Callable[[Request], Any]


def _headers(raw: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The first content-type and accept values, as Starlette's ``Headers.get`` would find them."""
    content_type = accept = None
    for name, value in raw:
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"accept" and accept is None:
            accept = value
    return content_type or b"", accept or b""


async def answer(answers: PostAnswers, scope: Scope, receive: Receive, send: Send, body: bytes) -> bool:
    """Answer a POST whose ``body`` has been read, if a compiled plan can; False if not (nothing sent)."""
    documents = answers.documents
    if not documents.enabled:
        return False
    content_type, accept = _headers(scope["headers"])
    # Starlette decodes header values as latin-1: a byte search finds the same ASCII words.
    if _JSON not in content_type or (accept and any(kind in accept for kind in _STREAMING)):
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict) or data.get("extensions") is not None:
        return False
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str) or not isinstance(variables, dict | None) or not isinstance(name, str | None):
        return False
    # Strawberry's decode_json refuses a body nested too deep (view.py), as with the fast path off.
    # The query and name are strings and there are no extensions: only the variables (and any
    # keys of no meaning to GraphQL) can nest.
    if (variables and too_deep(variables, MAX_JSON_DEPTH - 1)) or (not _FIELDS.issuperset(data) and too_deep(data)):
        return False
    entry = documents.entry(query)
    chosen = None if entry is None else entry.operation(name)
    if entry is None or chosen is None:
        return False
    if chosen[0].operation is not OperationType.QUERY:
        documents.counts[f"not compiled: a {chosen[0].operation.value}"] += 1
        return False  # mutations are never compiled: they run once, through Strawberry
    if chosen[0].name is not None:
        logs.note(operation=chosen[0].name.value)
    context = answers.context(Request(scope, receive))
    if tracing.enabled:  # the span Strawberry's OpenTelemetry extension opens on the stock path
        operation = chosen[0].name.value if chosen[0].name else None
        with tracing.span(f"GraphQL Query: {operation}" if operation else "GraphQL Query",
                          component="graphql", **{"graphql.operation.name": operation}):
            payload = await _compiled(answers, entry, chosen[0], variables, context)
    else:
        payload = await _compiled(answers, entry, chosen[0], variables, context)
    if payload is None:
        return False
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]})
    await send({"type": "http.response.body", "body": payload})
    return True


async def _compiled(answers: PostAnswers, entry: Prepared, operation: OperationDefinitionNode,
                    variables: dict[str, Any] | None, context: Any) -> bytes | None:
    """The response body from the operation's compiled plan, or None (counted) for Strawberry to answer."""
    counts = answers.documents.counts
    plan = entry.plan(answers.schema, operation)
    if isinstance(plan, NotCompiled):
        counts[f"not compiled: {plan}"] += 1
        return None
    try:
        coerced = plan.variables(variables or {})
        program = plan.program(coerced)
        # Strawberry's view passes no root value (get_root_value gives None).
        data = await program(None, context, coerced)
        payload = orjson.dumps({"data": data})
    except NotCompiled as exc:
        counts[f"not compiled: {exc}"] += 1
        return None
    except Fallback as exc:
        counts[f"fallback: {exc}"] += 1
        return None
    except Exception as exc:
        # Strawberry meets the same exception and renders it (or finds it was ours to handle).
        counts[f"fallback: {type(exc).__name__}"] += 1
        return None
    counts[COMPILED] += 1
    metrics.graphql_operation(operation.name.value if operation.name else None, "query")
    return payload
