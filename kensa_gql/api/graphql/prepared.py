"""Answering a POST of a document Strawberry has already accepted, without its per-request machinery.

For a small query, Strawberry's view and extension runner cost as much as the query itself:
measured in-process, a ``video(uuid)`` read took 243 us through the view, of which graphql-core's
execution was 81 us. Clients send the same few documents over and over, so once Strawberry has
parsed and validated a document (with every rule and limit of the schema), ``RememberPrepared``
keeps it, and the next POST of the same text is executed directly by graphql-core with the same
executor, context and arguments Strawberry would pass. Errors still go through the schema's own
``process_errors`` and the extensions' ``on_operation`` hooks (ErrorCodes renders and masks them),
and the response is built by the view's own ``process_result`` and ``create_response``.

Anything else takes Strawberry's path: documents not seen before or refused, GET, batches,
subscriptions, requests with ``extensions``, streaming ``Accept`` headers, bodies that are not
one JSON object. The shortcut also switches itself off if the schema gains an extension it
does not know to be inert after validation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import orjson
from graphql import DocumentNode, OperationDefinitionNode
from graphql import ExecutionResult as CoreResult
from starlette.requests import Request
from starlette.responses import Response
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension, ValidationCache
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from kensa_gql.api.graphql.errors import ErrorCodes
from kensa_gql.api.graphql.limits import SafeParserCache

if TYPE_CHECKING:
    from kensa_gql.api.graphql.schema import KensaSchema
    from kensa_gql.api.graphql.view import KensaGraphQL

DOCUMENTS = 256
_OVER_POST = {"query": OperationType.QUERY, "mutation": OperationType.MUTATION}
_STREAMING = ("multipart/mixed", "text/event-stream")


class PreparedDocuments:
    """The last ``DOCUMENTS`` documents Strawberry parsed and validated, by their text."""

    def __init__(self, size: int = DOCUMENTS) -> None:
        self._size = size
        self._documents: OrderedDict[str, tuple[str, DocumentNode]] = OrderedDict()
        self.enabled = True

    def get(self, query: str) -> DocumentNode | None:
        entry = self._documents.get(query)
        if entry is None:
            return None
        self._documents.move_to_end(query)
        return entry[1]

    def text(self, query: str) -> str:
        """The remembered copy of ``query`` (equal text), so long-lived operations share one."""
        entry = self._documents.get(query)
        return query if entry is None else entry[0]

    def remember(self, query: str, document: DocumentNode) -> None:
        self._documents[query] = (query, document)
        self._documents.move_to_end(query)
        while len(self._documents) > self._size:
            self._documents.popitem(last=False)


class RememberPrepared(SchemaExtension):
    """Keeps each document that reached execution: parsing and validation passed."""

    def __init__(self, documents: PreparedDocuments) -> None:
        self.documents = documents

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is not None:
            self.documents.remember(context.query, context.graphql_document)
        yield


# Extensions whose work is done once a document is validated (or, for ErrorCodes, that only
# touches errors, which the shortcut runs it for). Any other extension disables the shortcut.
_INERT = (MaxTokensLimiter, SafeParserCache, AddValidationRules, ValidationCache, ErrorCodes, RememberPrepared)


def check_extensions(schema: KensaSchema) -> None:
    # Exact types: a subclass (QueryDepthLimiter is an AddValidationRules) may do more.
    schema.prepared.enabled = all(type(e) in _INERT for e in schema.get_extensions())


def chosen_operation(document: DocumentNode, name: str | None) -> tuple[OperationDefinitionNode, str | None] | None:
    """The operation a request names (or Strawberry's choice when it names none)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        # Strawberry passes the first operation's name on when the request gives none.
        first = operations[0] if operations else None
        return None if first is None else (first, first.name.value if first.name else None)
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation, name
    return None


def release(executor: Any) -> None:
    """Break the executor's own reference cycle once its result is complete and error-free.

    graphql-core's executor keeps its bound methods in ``async_helpers``: a cycle that holds the
    request's whole working set (context, request, collected fields) until the cyclic collector
    finds it, some 57 objects per GraphQL request. Broken, reference counting frees them at once.
    """
    executor.async_helpers = None


async def respond(view: KensaGraphQL, request: Request) -> Response | None:
    """The response to ``request`` if it may take the shortcut, else None (its body is then read)."""
    schema: KensaSchema = view.schema  # type: ignore[assignment]
    if not schema.prepared.enabled:
        return None
    headers = request.headers
    if "application/json" not in headers.get("content-type", "") or any(
            kind in headers.get("accept", "") for kind in _STREAMING):
        return None
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("extensions") is not None:
        return None
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str) or not isinstance(variables, dict | None) or not isinstance(name, str | None):
        return None
    document = schema.prepared.get(query)
    chosen = None if document is None else chosen_operation(document, name)
    if document is None or chosen is None:
        return None
    operation, operation_name = chosen
    operation_type = _OVER_POST.get(operation.operation.value)
    if operation_type is None:
        return None
    sub_response = await view.get_sub_response(request)
    context = await view.get_context(request, response=sub_response)
    root_value: Any = await view.get_root_value(request)  # type: ignore[func-returns-value]
    # What graphql-core's execute() does (Strawberry's schema has no @defer or @stream), holding
    # on to the executor so its reference cycle can be broken once the result is complete.
    executor = schema.execution_context_class.build(
        schema._schema, document, root_value, context, variables, operation_name,
        is_awaitable=cast(Any, optimized_is_awaitable), operation_extensions=None)
    if isinstance(executor, list):
        core = CoreResult(None, errors=executor)
    else:
        outcome: Any = executor.execute_operation()
        core = await outcome if optimized_is_awaitable(outcome) else outcome
        if not isinstance(core, CoreResult):  # incremental delivery: the schema has no @defer/@stream
            raise TypeError("unexpected incremental result")
        if not core.errors:
            release(executor)
    if core.errors:
        result = await _with_errors(schema, core, query=query, variables=variables, context=context,
                                    root_value=root_value, operation_name=name, operation_type=operation_type)
    else:
        result = ExecutionResult(data=core.data, errors=None)
    response_data = await view.process_result(request, result)
    return view.create_response(response_data=response_data, sub_response=sub_response)


async def _with_errors(schema: KensaSchema, core: CoreResult, *, query: str, variables: dict[str, Any] | None,
                       context: Any, root_value: Any, operation_name: str | None,
                       operation_type: OperationType) -> ExecutionResult:
    """What Strawberry makes of a result with errors: logged by the schema, rendered by the extensions."""
    execution = ExecutionContext(query=query, schema=schema, allowed_operations={operation_type},
                                 context=context, variables=variables, root_value=root_value,
                                 provided_operation_name=operation_name)
    extensions = schema.get_extensions()
    for extension in extensions:
        extension.execution_context = execution
    runner = schema.create_extensions_runner(execution, extensions)
    execution.pre_execution_errors = core.errors
    schema._process_errors(core.errors or [], execution)  # as Strawberry does: suggestions, then logging
    async with runner.operation():
        execution.result = ExecutionResult(data=core.data, errors=core.errors)
    result = execution.result
    assert isinstance(result, ExecutionResult)
    result.extensions = await runner.get_extensions_results(execution)
    return result
