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

import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from inspect import isawaitable
from typing import Any, Generic, Protocol, TypeVar

import orjson
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    create_source_event_stream,
    execute_subscription_event,
)
from graphql.language import OperationType as OperationKind
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation
from strawberry.types import ExecutionContext as StrawberryContext
from strawberry.types import ExecutionResult as StrawberryResult
from strawberry.types.graphql import OperationType
from strawberry.utils.aio import aclosing

from kensa_gql.api.graphql.prepared import PreparedDocuments, chosen_operation
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


def _memo_key(executor: Any) -> tuple[int, tuple[tuple[str, Any], ...]] | None:
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
        key = None if results is None else _memo_key(self)
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


def _dumps(data: Any) -> str:
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
                text = _dumps(data)
                _encoded.put(data, text)
            return f'{{"id":{_dumps(message["id"])},"type":"next","payload":{{"data":{text}}}}}'
    return _dumps(message)


# -- the subscription loop ------------------------------------------------------------------------
# Strawberry runs each subscription through its extension runner, a stream generator, graphql-core's
# mapping iterators and a per-event result pipeline: with 10,000 subscribers that is 266 objects
# for the cyclic collector per subscriber and a pause of 1-2 s whenever it scans them all. A
# subscription to a document Strawberry has already accepted runs here instead: graphql-core
# builds the executor and the source stream exactly as Strawberry would have it do, and each event
# is executed (once per change, see above) and sent. Whatever is not the plain case goes back to
# Strawberry before anything is sent: a document not yet seen, variables or an authorisation
# refused, anything but one root field. Errors while streaming are rendered by the schema's
# extensions, as Strawberry renders them, then the operation completes.


class _Handler(Protocol):
    schema: Any
    context: Any
    root_value: Any

    async def handle_task_exception(self, error: Exception) -> None: ...


class Lean:
    """What a lean subscription keeps between changes: no executor, only what rebuilds one."""

    __slots__ = ("document", "key", "name", "operation", "stream")

    def __init__(self, document: Any, name: str | None, executor: Any, stream: Any) -> None:
        self.document = document
        self.name = name
        self.operation = executor.operation
        self.key = _memo_key(executor)
        self.stream = stream

    def remembered(self, payload: object) -> ExecutionResult | None:
        results = _results.get(payload)
        hit = None if results is None or self.key is None else results.get(self.key)
        return hit[1] if hit is not None and hit[0] is self.operation else None


async def lean_stream(handler: _Handler, operation: Operation[Any, Any]) -> Lean | None:
    """The source stream of ``operation`` ready for ``run_lean``, or None to let Strawberry run it."""
    schema = handler.schema
    documents: PreparedDocuments | None = getattr(schema, "prepared", None)
    if documents is None or not documents.enabled:
        return None
    document = documents.get(operation.query)
    if document is None:
        return None
    chosen = chosen_operation(document, operation.operation_name)
    if chosen is None:
        return None
    node, name = chosen
    selections = node.selection_set.selections
    if node.operation is not OperationKind.SUBSCRIPTION or len(selections) != 1 or not isinstance(
            selections[0], FieldNode) or selections[0].directives:
        return None
    executor = _executor(handler, operation, document, name, handler.root_value)
    if isinstance(executor, list):  # variables refused: Strawberry reports it
        return None
    stream = create_source_event_stream(executor)
    if isawaitable(stream):
        stream = await stream
    if isinstance(stream, ExecutionResult):  # refused before streaming (NOT_FOUND...): Strawberry reports it
        return None
    operation.query = documents.text(operation.query)  # one copy of the text for all its subscribers
    return Lean(document, name, executor, stream)


def _executor(handler: _Handler, operation: Operation[Any, Any], document: Any, name: str | None,
              root_value: Any) -> Any:
    """What Strawberry has graphql-core build for a subscription (with ``root_value`` as the event)."""
    schema = handler.schema
    return schema.execution_context_class.build(schema._schema, document, root_value, handler.context,
                                                operation.variables, name, operation_extensions=None)


async def run_lean(handler: _Handler, operation: Operation[Any, Any], lean: Lean) -> None:
    """Send each event of the stream as ``next``, then ``complete``; as Strawberry's run_operation does."""
    try:
        try:
            async with aclosing(lean.stream):
                async for payload in lean.stream:
                    # The first subscriber of a change executes it; the others find its result.
                    result = lean.remembered(payload)
                    if result is None:
                        outcome = execute_subscription_event(
                            _executor(handler, operation, lean.document, lean.name, payload))
                        result = await outcome if isawaitable(outcome) else outcome
                    if result.errors:
                        await operation.send_next(await _rendered(handler, operation, result))
                    else:
                        await operation.send_next(StrawberryResult(data=result.data, errors=None))
                    # Not kept while waiting for the next change: the first one is this subscriber's own.
                    del payload, result
        except Exception as exc:  # raised by the source stream: reported like Strawberry, then complete
            error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            await operation.send_next(await _rendered(handler, operation, ExecutionResult(None, [error])))
        await operation.send_operation_message({"id": operation.id, "type": "complete"})
    except Exception as error:  # as Strawberry: log it, complete, forget the operation
        await handler.handle_task_exception(error)
        with contextlib.suppress(Exception):
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        raise


async def _rendered(handler: _Handler, operation: Operation[Any, Any], result: ExecutionResult) -> StrawberryResult:
    """Errors logged by the schema and rendered (codes, masking) by its extensions."""
    schema = handler.schema
    execution = StrawberryContext(query=operation.query, schema=schema,
                                  allowed_operations={OperationType.SUBSCRIPTION}, context=handler.context,
                                  variables=operation.variables, root_value=handler.root_value,
                                  provided_operation_name=operation.operation_name)
    extensions = schema.get_extensions()
    for extension in extensions:
        extension.execution_context = execution
    runner = schema.create_extensions_runner(execution, extensions)
    execution.pre_execution_errors = result.errors
    schema._process_errors(result.errors or [], execution)
    rendered = StrawberryResult(data=result.data, errors=result.errors)
    async with runner.operation():
        execution.result = rendered
    async with runner.on_stream_result(rendered):
        pass
    return rendered
