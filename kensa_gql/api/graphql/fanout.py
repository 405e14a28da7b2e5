"""Serialising a status change once for all of its subscribers, not once per subscriber.

Strawberry executes a subscription's selection set for every subscriber on every event, and the
transport JSON-encodes every message on its own: about 120 us of server CPU per delivery with
2,000 ``videoStatus`` subscribers (py-spy: 62 % in graphql-core's per-event execution), so one
change took 1.2 s of CPU to reach 10,000. Yet every subscriber of a change is sent the same
thing: a change is one domain object, it goes only to the watchers of its video, and a video
has one owner, so nothing in the result can differ between them but the operation itself.

* ``shared_video`` gives every subscriber of one change the same ``Video`` object;
* ``SharedEventExecution`` executes an operation on such an object once per (operation,
  variables) and hands the same result to every subscriber that runs that operation;
* ``encode_json`` encodes that shared result once and splices in each operation's id.

Everything is keyed by object identity and remembered for the last ``MEMORY`` changes only.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import orjson
from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from kensa_gql.domain import videos as domain

MEMORY = 256  # changes remembered; each is sent to its subscribers within moments

T = TypeVar("T")
V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """Values for the last few objects, by identity. Holding the object keeps its id unique."""

    def __init__(self, size: int = MEMORY) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[object, V]] = OrderedDict()

    def get(self, obj: object) -> V | None:
        entry = self._entries.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def put(self, obj: object, value: V) -> None:
        self._entries[id(obj)] = (obj, value)
        self._entries.move_to_end(id(obj))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


_Results = dict[tuple[int, tuple[tuple[str, Any], ...]], tuple[object, ExecutionResult]]

_views: IdentityMemo[Any] = IdentityMemo()          # domain change -> its shared Strawberry object
_results: IdentityMemo[_Results] = IdentityMemo()   # shared object -> results per operation
_encoded: IdentityMemo[str] = IdentityMemo()        # a shared result's data -> its JSON ("" until encoded)


def shared_video(change: domain.Video, render: Callable[[domain.Video], T]) -> T:
    """One rendering of ``change`` for all of its subscribers (``render`` is ``Video.from_domain``)."""
    view = _views.get(change)
    if view is None:
        view = render(change)
        _views.put(change, view)
        _results.put(view, {})
    shared: T = view
    return shared


def memo_key(executor: Any) -> tuple[int, tuple[tuple[str, Any], ...]] | None:
    try:
        key = (id(executor.operation), tuple(sorted(executor.variable_values.coerced.items())))
        hash(key)
    except TypeError:
        return None
    return key


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """Executes a subscription event on a shared object once per operation and variables."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        # graphql-core passes serially=False only for subscription events.
        results = _results.get(self.root_value) if serially is False else None
        key = None if results is None else memo_key(self)
        if results is None or key is None:
            return super().execute_operation(serially)
        hit = results.get(key)
        if hit is not None and hit[0] is self.operation:
            return hit[1]
        outcome = super().execute_operation(serially)
        if self.is_awaitable(outcome):
            return self._remember_when_done(results, key, outcome)
        self._remember(results, key, outcome)
        return outcome

    async def _remember_when_done(self, results: _Results, key: Any, outcome: Awaitable[Any]) -> Any:
        result = await outcome
        self._remember(results, key, result)
        return result

    def _remember(self, results: _Results, key: Any, result: Any) -> None:
        if isinstance(result, ExecutionResult) and not result.errors and result.data is not None:
            results[key] = (self.operation, result)
            _encoded.put(result.data, "")


def dumps(data: Any) -> str:
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # something orjson does not know: the standard library's rendering
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def encode_json(message: Any) -> str:
    """JSON for the GraphQL view: a shared subscription result is encoded once, then reused."""
    payload = message.get("payload") if isinstance(message, dict) and message.get("type") == "next" else None
    if isinstance(payload, dict) and len(payload) == 1 and "data" in payload and len(message) == 3:
        data = payload["data"]
        text = _encoded.get(data)
        if text is not None:
            if not text:
                text = dumps(data)
                _encoded.put(data, text)
            return f'{{"id":{dumps(message["id"])},"type":"next","payload":{{"data":{text}}}}}'
    return dumps(message)
