"""The documents Strawberry has accepted, remembered by their text, for the fast path to answer.

For a small query, Strawberry's view and extension runner cost as much as the query itself:
measured in-process, a ``video(uuid)`` read took 243 us through the view, of which graphql-core's
execution was 81 us. Clients send the same few documents over and over, so once Strawberry has
parsed and validated a document (with every rule and limit of the schema), ``RememberPrepared``
keeps it; the next POST of the same text is answered by a compiled plan (post.py, compiled.py)
and the next graphql-transport-ws subscription to it may become a lean subscriber (ws/).

A document is only remembered after Strawberry accepted it, and the fast path switches itself
off (``inert``) if the schema gains an extension it does not know to be inert after validation.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator

from graphql import DocumentNode, OperationDefinitionNode
from strawberry import Schema
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension

from kensa_gql.api.graphql.errors import ErrorCodes
from kensa_gql.api.graphql.fastpath.compiled import NotCompiled, OperationPlan
from kensa_gql.api.graphql.limits import CACHED_DOCUMENT_CHARS, BudgetedValidation, SafeParserCache
from kensa_gql.api.graphql.metered import OperationMetrics

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

    def plan(self, schema: Schema, operation: OperationDefinitionNode) -> OperationPlan | NotCompiled:
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
        # How POSTs of remembered documents were answered: "compiled", or why Strawberry did (post.py).
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
        if len(query) > CACHED_DOCUMENT_CHARS:
            return  # bounded in bytes too: large documents are rare and would crowd out the small
        # Known already (Strawberry answered a request its plan could not): its plans stay.
        if query not in self._documents:
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
# touches errors, which the shortcut runs it for; OperationMetrics, whose count the shortcut makes
# itself). Any other extension disables the shortcut.
_INERT = (MaxTokensLimiter, SafeParserCache, AddValidationRules, BudgetedValidation, ErrorCodes, RememberPrepared,
          OperationMetrics)


def inert(schema: Schema) -> bool:
    """Whether every extension of ``schema`` has done its work once a document is validated."""
    # Exact types: a subclass (QueryDepthLimiter is an AddValidationRules) may do more.
    return all(type(e) in _INERT for e in schema.get_extensions())


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
