"""Answering a POST of a document Strawberry has already accepted, without its per-request machinery.

For a small query, Strawberry's view and extension runner cost as much as the query itself:
measured in-process, a ``video(uuid)`` read took 243 us through the view, of which graphql-core's
execution was 81 us. Clients send the same few documents over and over, so once Strawberry has
parsed and validated a document (with every rule and limit of the schema), ``RememberPrepared``
keeps it, and the next POST of the same text skips Strawberry's view (post.py): a query runs as
a compiled plan (compiled.py), and anything else, or a query the plan cannot answer, is
executed here directly by graphql-core with the same executor, context and arguments
Strawberry would pass. Errors still go through the schema's own ``process_errors`` and the
extensions' ``on_operation`` hooks (ErrorCodes renders and masks them), and the response is
built by the view's own ``process_result`` and ``create_response``.

Anything else takes Strawberry's path: documents not seen before or refused, GET, batches,
subscriptions, requests with ``extensions``, streaming ``Accept`` headers, bodies that are not
one JSON object. The shortcut also switches itself off if the schema gains an extension it
does not know to be inert after validation.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from graphql import DocumentNode, OperationDefinitionNode
from graphql import ExecutionResult as CoreResult
from starlette.requests import Request
from starlette.responses import Response
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension, ValidationCache
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from kensa_gql.api.graphql import errors
from kensa_gql.api.graphql.compiled import NotCompiled, OperationPlan
from kensa_gql.api.graphql.errors import ErrorCodes
from kensa_gql.api.graphql.limits import SafeParserCache

if TYPE_CHECKING:
    from kensa_gql.api.graphql.schema import KensaSchema
    from kensa_gql.api.graphql.view import KensaGraphQL

DOCUMENTS = 256


class Prepared:
    """A remembered document, and the plans compiled for its operations (by operation node)."""

    __slots__ = ("chosen", "document", "plans", "query")

    def __init__(self, query: str, document: DocumentNode) -> None:
        self.query = query
        self.document = document
        self.plans: dict[int, OperationPlan | NotCompiled] = {}
        # chosen_operation's answers by requested name: only names the document has, so few.
        self.chosen: dict[str | None, tuple[OperationDefinitionNode, str | None]] = {}

    def operation(self, name: str | None) -> tuple[OperationDefinitionNode, str | None] | None:
        """The operation a request names, as ``chosen_operation`` finds it."""
        chosen = self.chosen.get(name)
        if chosen is None:
            chosen = chosen_operation(self.document, name)
            if chosen is not None:
                self.chosen[name] = chosen
        return chosen

    def plan(self, schema: KensaSchema, operation: OperationDefinitionNode) -> OperationPlan | NotCompiled:
        plan = self.plans.get(id(operation))  # the document holds the node: its id stays its own
        if plan is None:
            try:
                plan = OperationPlan(schema, self.document, operation)
            except NotCompiled as exc:
                plan = exc
            self.plans[id(operation)] = plan
        return plan


class PreparedDocuments:
    """The last ``DOCUMENTS`` documents Strawberry parsed and validated, by their text."""

    def __init__(self, size: int = DOCUMENTS) -> None:
        self._size = size
        self._documents: OrderedDict[str, Prepared] = OrderedDict()
        self.enabled = True
        # How POSTs of remembered documents were answered: "compiled", or why not (see post.py).
        self.counts: Counter[str] = Counter()

    def entry(self, query: str) -> Prepared | None:
        entry = self._documents.get(query)
        if entry is not None:
            self._documents.move_to_end(query)
        return entry

    def get(self, query: str) -> DocumentNode | None:
        entry = self.entry(query)
        return None if entry is None else entry.document

    def text(self, query: str) -> str:
        """The remembered copy of ``query`` (equal text), so long-lived operations share one."""
        entry = self._documents.get(query)
        return query if entry is None else entry.query

    def remember(self, query: str, document: DocumentNode) -> None:
        self._documents[query] = Prepared(query, document)
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


async def execute(view: KensaGraphQL, request: Request, document: DocumentNode, *, query: str,
                  variables: dict[str, Any] | None, name: str | None, operation_name: str | None,
                  operation_type: OperationType, context: Any, root_value: Any) -> Response:
    """The response Strawberry would give, from graphql-core's executor run directly."""
    schema: KensaSchema = view.schema  # type: ignore[assignment]
    sub_response = await view.get_sub_response(request)
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
        result = await errors.rendered(schema, core, query=query, variables=variables, context=context,
                                       root_value=root_value, operation_name=name, operation_type=operation_type)
    else:
        result = ExecutionResult(data=core.data, errors=None)
    response_data = await view.process_result(request, result)
    return view.create_response(response_data=response_data, sub_response=sub_response)
