"""Every /api/v1 response a test server sends, checked against the OpenAPI document it serves.

``ContractCheck`` wraps the app of each in-process test server (tests/conftest.py LiveServer):
whatever client a test uses, each REST response's status, documented headers and JSON body are
validated against ``openapi_document`` (JSON Schema 2020-12, as OpenAPI 3.1 has it), and
``LiveServer.stop`` fails the test on any mismatch. The document and the API cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kensa_gql.api.rest.openapi import openapi_document
from kensa_gql.api.rest.routes import CLIENT_CLOSED
from kensa_gql.domain.catalog import Catalog

PREFIX = "/api/v1"
_SKIPPED = (PREFIX + "/docs",)  # the page for people, not part of the document


@functools.cache
def _document() -> dict[str, Any]:
    return openapi_document(Catalog.load())


@functools.cache
def _path_patterns() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for template in _document()["paths"]:
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        patterns.append((re.compile(regex), template))
    # Exact templates first: /video/list is its own path, not a {uuid}.
    return sorted(patterns, key=lambda p: "{" in p[1])


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and len(node) == 1:
        target: Any = _document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@functools.cache
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``pointer`` (json-encoded path), its $refs resolved in the document."""
    node: Any = _document()
    for part in json.loads(pointer):
        node = _resolve(node)[part] if isinstance(node, dict) else node[part]
    schema = {**_resolve(node), "components": _document()["components"]}
    return jsonschema.Draft202012Validator(schema)


def problems(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """What in this response the document does not admit; [] when it does (or it does not describe it)."""
    relative = path[len(PREFIX):]
    template = next((t for pattern, t in _path_patterns() if pattern.fullmatch(relative)), None)
    if template is None or method.lower() not in _document()["paths"][template]:
        return []  # an unknown path or a method the path does not offer: not the document's to describe
    if status == CLIENT_CLOSED:
        return []  # the client left before the answer (Prefer: wait): nobody receives it
    operation = _document()["paths"][template][method.lower()]
    where = f"{method} {path} -> {status}"
    if str(status) not in operation["responses"]:
        return [f"{where}: status not documented"]
    response = _resolve(operation["responses"][str(status)])
    found = []
    for name, header in response.get("headers", {}).items():
        value = headers.get(name.lower())
        if value is None:
            continue
        schema = _resolve(header).get("schema", {})
        typed: Any = int(value) if schema.get("type") == "integer" and value.isdigit() else value
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(typed)]
        found += [f"{where}: header {name}: {e}" for e in errors]
    if status in (429, 503) and "retry-after" not in headers:
        found.append(f"{where}: no Retry-After")
    content = response.get("content", {}).get("application/json")
    if content is not None:
        if not headers.get("content-type", "").startswith("application/json"):
            return [*found, f"{where}: content-type {headers.get('content-type')!r}"]
        pointer = json.dumps(["paths", template, method.lower(), "responses", str(status), "content",
                              "application/json", "schema"])
        data = json.loads(body)
        found += [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in _validator(pointer).iter_errors(data)]
    return found


class ContractCheck:
    """Pure ASGI: records every /api/v1 response and what the document says is wrong with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.violations: list[str] = []
        self.checked = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/") or path.startswith(_SKIPPED):
            await self.app(scope, receive, send)
            return
        status = 0
        headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and scope["method"] != "HEAD":
                    self.checked += 1
                    try:
                        self.violations += problems(scope["method"], path, status, headers, b"".join(chunks))
                    except Exception as exc:  # a body that is not JSON, say: a violation too
                        self.violations.append(f"{scope['method']} {path} -> {status}: {exc!r}")
            await send(message)

        await self.app(scope, receive, recording)
