"""``application/graphql-response+json``: the GraphQL over HTTP spec's own media type, when asked for.

A client that accepts it (urql, graphql-request and the spec's audit send it first) learns from
the status whether its request was executed at all: a request error (a document that does not
parse or validate, variables that do not coerce) is a 4xx without a ``data`` entry, while a
response that executed stays 200 even with field errors. Under ``application/json`` (every
client that does not ask) nothing changes: 200 for anything GraphQL answered, as before.

Applied to whatever /graphql answers, Strawberry's view and the fast path alike, by wrapping
``send``: only JSON bodies are looked at, only when the client asked, so other clients pay nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Message, Scope, Send

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
_JSON = b"application/json"


def wants_graphql_response_json(scope: Scope) -> bool:
    """Whether the request's Accept lists the GraphQL response media type (and does not refuse it)."""
    accept = next((v for k, v in scope["headers"] if k == b"accept"), None)
    if accept is None or b"graphql-response+json" not in accept:
        return False
    for item in accept.decode("latin-1").split(","):
        kind, _, params = item.strip().partition(";")
        if kind.strip().lower() == GRAPHQL_RESPONSE_JSON:
            return not any(p.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
                           for p in params.split(";"))
    return False


def request_error(body: Any) -> bool:
    """A result that never executed: no data, and errors none of which belongs to a field (no path)."""
    return (isinstance(body, dict) and body.get("data") is None and bool(body.get("errors"))
            and all(isinstance(e, dict) and "path" not in e for e in body["errors"]))


def as_graphql_response_json(send: Send) -> Send:
    """``send`` that answers in the GraphQL response media type, request errors as 400 without ``data``."""
    start: Message | None = None

    async def sending(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            if not any(k == b"content-type" and v.startswith(_JSON) for k, v in headers):
                await send(message)  # GraphiQL, a multipart stream: not ours to change
                return
            start = message  # held until the body says whether the request executed
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        held, start = start, None
        body, status = message.get("body", b""), held["status"]
        if not message.get("more_body", False) and status == 200:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if request_error(parsed):
                status = 400
                body = orjson.dumps({k: v for k, v in parsed.items() if k != "data"})
        headers = [(k, v) for k, v in held.get("headers", []) if k not in (b"content-type", b"content-length")]
        headers.append((b"content-type", GRAPHQL_RESPONSE_JSON.encode() + b"; charset=utf-8"))
        if not message.get("more_body", False):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({**held, "status": status, "headers": headers})
        await send({**message, "body": body})

    return sending
