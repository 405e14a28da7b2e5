"""The graphql-transport-ws messages the fast path writes itself, as Strawberry would encode them."""

from __future__ import annotations

from typing import Any

from strawberry.types import ExecutionResult

from kensa_gql.api.graphql.encoding import dumps


def payload_of(result: ExecutionResult) -> dict[str, Any]:
    """The payload of a ``next`` for ``result``, as Strawberry sends it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload


def next_text(op_id: str, payload: dict[str, Any]) -> str:
    return dumps({"id": op_id, "type": "next", "payload": payload})


def next_encoded(op_id: str, data: str) -> str:
    """``next_text`` for data already encoded (``data``: its JSON), byte for byte."""
    return f'{{"id":{dumps(op_id)},"type":"next","payload":{{"data":{data}}}}}'


def complete_text(op_id: str) -> str:
    return dumps({"id": op_id, "type": "complete"})


def malformed(payload: dict[str, Any]) -> bool:
    """Whether a subscribe (or legacy start) payload's fields are not what the protocols say.

    ``query`` a string; ``variables`` and ``extensions`` objects, ``operationName`` a string, each
    absent or null. Anything else would reach graphql-core and fail there as a fault of ours.
    """
    if not isinstance(payload.get("query"), str):
        return True
    for field, kind in (("variables", dict), ("extensions", dict), ("operationName", str)):
        value = payload.get(field)
        if value is not None and not isinstance(value, kind):
            return True
    return False
