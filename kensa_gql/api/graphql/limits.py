"""Protection against abusive documents, applied before anything executes.

Order of defence: the document's size (checked by the view before parsing), its token count
(the parser stops counting at the limit), then validation rules for depth and aliases.

Strawberry ships depth and alias limiters, but its depth limiter skips introspection fields
(``{ __schema { types { fields { type { ofType ... } } } } }`` nests without limit) and both walk
fragment spreads once per path: 18 fragments that each spread the next twice (850 bytes) took
its alias limiter 0.3 s, and every further fragment doubles that. These rules remember each
fragment's result, so their cost is linear in the document. They are built once per schema, not
per request, so the validation cache can recognise them.

Depth has two budgets. Data queries get ``graphql_max_depth`` (our deepest real query is 3).
Introspection gets ``INTROSPECTION_MAX_DEPTH``: the standard introspection query that GraphiQL,
Apollo and gql send is 15 deep. (graphql-core also refuses introspection that nests ``fields``,
``interfaces`` or ``possibleTypes`` more than three times, the shapes that multiply work.)
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import ParserCache

_IN_PROGRESS = -1


class DocumentTooLarge(Exception):
    """A document over ``graphql_max_document_bytes``: refused before it is parsed (413 over HTTP)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request is larger than {limit} bytes")
        self.limit = limit

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(str(self), extensions={"code": "PAYLOAD_TOO_LARGE"})


def check_document(query: object, limit: int) -> None:
    """Raises DocumentTooLarge if ``query`` (a document's text) is over ``limit`` bytes."""
    # Characters first: a string with fewer characters than the limit / 4 cannot exceed it.
    if isinstance(query, str) and len(query) * 4 > limit and len(query.encode()) > limit:
        raise DocumentTooLarge(limit)
INTROSPECTION_MAX_DEPTH = 20
_INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


class _FragmentWalker:
    """Folds a measure over selection sets, visiting each fragment once."""

    def __init__(self, context: ValidationContext) -> None:
        self.fragments = {d.name.value: d for d in context.document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.memo: dict[str, int] = {}

    def operations(self, context: ValidationContext) -> Iterator[OperationDefinitionNode]:
        for definition in context.document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                yield definition

    def fragment(self, name: str, measure: _Measure) -> int:
        known = self.memo.get(name)
        if known is not None:
            return 0 if known == _IN_PROGRESS else known  # a cycle: reported by the spec's own rule
        node = self.fragments.get(name)
        if node is None:
            return 0
        self.memo[name] = _IN_PROGRESS
        value = measure(self, node.selection_set)
        self.memo[name] = value
        return value


class _Measure:
    def __call__(self, walker: _FragmentWalker, selections: SelectionSetNode | None) -> int:
        raise NotImplementedError


class _Depth(_Measure):
    def __init__(self, *, introspection: bool) -> None:
        self.introspection = introspection

    def __call__(self, walker: _FragmentWalker, selections: SelectionSetNode | None) -> int:
        if selections is None:
            return 0
        deepest = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                if not self.introspection and node.name.value in _INTROSPECTION_ROOTS:
                    depth = 1
                else:
                    depth = 1 + self(walker, node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                depth = self(walker, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                depth = walker.fragment(node.name.value, self)
            else:
                depth = 0
            deepest = max(deepest, depth)
        return deepest


class _Aliases(_Measure):
    def __call__(self, walker: _FragmentWalker, selections: SelectionSetNode | None) -> int:
        if selections is None:
            return 0
        total = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                total += (node.alias is not None) + self(walker, node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                total += self(walker, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += walker.fragment(node.name.value, self)
        return total


def max_depth_rule(max_depth: int) -> type[ValidationRule]:
    """Refuse operations nested deeper than ``max_depth`` (introspection: ``INTROSPECTION_MAX_DEPTH``)."""
    budgets = ((_Depth(introspection=False), max_depth),
               (_Depth(introspection=True), max(max_depth, INTROSPECTION_MAX_DEPTH)))

    class MaxDepth(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            for measure, limit in budgets:
                walker = _FragmentWalker(context)
                for operation in walker.operations(context):
                    depth = measure(walker, operation.selection_set)
                    if depth > limit:
                        name = operation.name.value if operation.name else "anonymous"
                        message = f"operation '{name}' is nested {depth} levels deep; the limit is {limit}"
                        context.report_error(GraphQLError(message, operation))
                        return

    return MaxDepth


_ALIASES = _Aliases()


def max_aliases_rule(max_aliases: int) -> type[ValidationRule]:
    """Refuse documents whose operations use more than ``max_aliases`` aliases in total."""

    class MaxAliases(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            walker = _FragmentWalker(context)
            total = sum(_ALIASES(walker, op.selection_set) for op in walker.operations(context))
            if total > max_aliases:
                context.report_error(GraphQLError(
                    f"the document uses {total} aliases; the limit is {max_aliases}"))

    return MaxAliases


class SafeParserCache(ParserCache):
    """ParserCache that leaves failures to Strawberry.

    The stock extension parses inside its hook, so a syntax error escapes Strawberry's error
    handling: over WebSocket the operation dies with a logged traceback instead of an error
    message. On failure this one caches nothing and lets Strawberry parse (and report) again.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except Exception:  # noqa: S110 - Strawberry parses again and reports it properly
            pass
        yield
