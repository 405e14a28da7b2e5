"""POST /graphql for documents Strawberry has accepted before, straight from the ASGI messages.

Strawberry's view turns every request into a Starlette request and response, a sub-response,
its request adapter and a result dictionary before the JSON goes out. For a remembered query
(see prepared.py) none of that can change the answer, so ``answer`` reads what it needs from
the scope, runs the operation's compiled plan (compiled.py) and sends the JSON that Strawberry
would send: status 200, ``content-length`` then ``content-type: application/json``, the body
encoded by orjson exactly as the view's ``encode_json`` does.

Whenever the plan cannot answer (it does not handle the operation, the variables do not coerce,
a resolver raised, a value needs graphql-core's care), the operation runs again from scratch
through prepared.py's executor path, with the same context: the caller's principal lookup is
shared, so authentication is not asked twice, and queries have no side effects to repeat. Each
outcome is counted in ``PreparedDocuments.counts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from strawberry.types.graphql import OperationType

from kensa_gql.api.graphql import prepared
from kensa_gql.api.graphql.compiled import Fallback, NotCompiled
from kensa_gql.api.graphql.context import Context

if TYPE_CHECKING:
    from kensa_gql.api.graphql.schema import KensaSchema
    from kensa_gql.api.graphql.view import KensaGraphQL

_OVER_POST = {"query": OperationType.QUERY, "mutation": OperationType.MUTATION}
_STREAMING = (b"multipart/mixed", b"text/event-stream")
_JSON = b"application/json"
COMPILED = "compiled"


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


async def answer(view: KensaGraphQL, scope: Scope, receive: Receive, send: Send, body: bytes) -> bool:
    """Answer a POST whose ``body`` has been read, if it may skip Strawberry; False if not (nothing sent)."""
    schema: KensaSchema = view.schema  # type: ignore[assignment]
    documents = schema.prepared
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
    entry = documents.entry(query)
    chosen = None if entry is None else entry.operation(name)
    if entry is None or chosen is None:
        return False
    operation, operation_name = chosen
    operation_type = _OVER_POST.get(operation.operation.value)
    if operation_type is None:
        return False
    request = Request(scope, receive)
    context = Context(request)  # what view.get_context gives; it never sees the sub-response
    root_value: Any = await view.get_root_value(request)  # type: ignore[func-returns-value]
    payload = await _compiled(schema, entry, operation, variables, context, root_value)
    if payload is not None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]})
        await send({"type": "http.response.body", "body": payload})
        return True
    response = await prepared.execute(view, request, entry.document, query=query, variables=variables, name=name,
                                      operation_name=operation_name, operation_type=operation_type,
                                      context=context, root_value=root_value)
    await response(scope, receive, send)
    return True


async def _compiled(schema: KensaSchema, entry: prepared.Prepared, operation: Any, variables: dict[str, Any] | None,
                    context: Context, root_value: Any) -> bytes | None:
    """The response body from the operation's compiled plan, or None (counted) to run it the usual way."""
    counts = schema.prepared.counts
    plan = entry.plan(schema, operation)
    if isinstance(plan, NotCompiled):
        counts[f"not compiled: {plan}"] += 1
        return None
    try:
        coerced = plan.variables(variables or {})
        program = plan.program(coerced)
        data = await program(root_value, context, coerced)
        payload = orjson.dumps({"data": data})
    except NotCompiled as exc:
        counts[f"not compiled: {exc}"] += 1
        return None
    except Fallback as exc:
        counts[f"fallback: {exc}"] += 1
        return None
    except Exception as exc:
        # The usual path meets the same exception and renders it (or finds it was ours to handle).
        counts[f"fallback: {type(exc).__name__}"] += 1
        return None
    counts[COMPILED] += 1
    return payload
