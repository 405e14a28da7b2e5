"""Protection against abusive documents, applied before anything executes.

Order of defence, cheapest first, so that a refused document costs little and an accepted one
validates in a few milliseconds:

1. its size in bytes and an upper bound of its tokens, from the text, before parsing
   (``check_document``: two regular-expression passes, under a millisecond for 16 KB); the parser then stops
   at the exact token limit;
2. its shape, before validation (``BudgetedValidation``): how many selections it makes with every
   fragment spread counted at full size, and how often one response name repeats in one
   selection set. graphql-core's OverlappingFieldsCanBeMerged compares every pair of fields
   that share a response name, recursively: ``{ models{id} models{id} ... x450 }`` (5.5 KB,
   1,800 tokens) took 0.55 s to validate. The shape check is linear in the document;
3. then validation with the spec's rules and ours for depth and aliases.

Only small documents are cached (parsed, validated, remembered by the fast path), so the caches
are bounded in bytes, not only in entries: a flood of distinct large documents cannot fill them.

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

import re
from collections import Counter
from collections.abc import Iterator

from graphql import (
    DocumentNode,
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
from strawberry.extensions import ParserCache, ValidationCache

_IN_PROGRESS = -1


# Documents up to this size are cached; larger ones are parsed and validated each time.
CACHED_DOCUMENT_CHARS = 4096


class DocumentTooLarge(Exception):
    """A document over its byte or token limit: refused before it is parsed (413 over HTTP)."""

    def __init__(self, limit: int, unit: str = "bytes") -> None:
        what = "request" if unit == "bytes" else "document"
        super().__init__(f"the {what} is larger than {limit} {unit}")
        self.limit = limit

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(str(self), extensions={"code": "PAYLOAD_TOO_LARGE"})


# Strings, block strings and comments first (a string is one token, a comment none), then the tokens the
# lexer would count: names, numbers, punctuators. An upper bound's worth of precision is enough:
# a document just under the limit is parsed, and the parser's own count is exact.
_NOT_TOKENS = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n\r]*')
_TOKEN = re.compile(r"[_A-Za-z][_0-9A-Za-z]*|-?[0-9][0-9.eE+-]*|\.\.\.|[!$&()\[\]{}:=@|]")


def _one_token(match: re.Match[str]) -> str:
    return " " if match.group().startswith("#") else " _ "  # a comment is no token; a string is one


def rough_token_count(query: str) -> int:
    """The lexer's token count for ``query``, give or take string edge cases (never much less)."""
    return len(_TOKEN.findall(_NOT_TOKENS.sub(_one_token, query)))


def check_document(query: object, max_bytes: int, max_tokens: int | None = None) -> None:
    """Raises DocumentTooLarge if ``query`` (a document's text) is over ``max_bytes`` or ``max_tokens``."""
    if not isinstance(query, str):
        return
    # Characters first: a string with fewer characters than the limit / 4 cannot exceed it.
    if len(query) * 4 > max_bytes and len(query.encode()) > max_bytes:
        raise DocumentTooLarge(max_bytes)
    # A token takes at least one character: short documents cannot exceed the token limit.
    if max_tokens is not None and len(query) > max_tokens and rough_token_count(query) > max_tokens:
        raise DocumentTooLarge(max_tokens, "tokens")
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
    """ParserCache that leaves failures, and large documents, to Strawberry.

    The stock extension parses inside its hook, so a syntax error escapes Strawberry's error
    handling: over WebSocket the operation dies with a logged traceback instead of an error
    message. On failure this one caches nothing and lets Strawberry parse (and report) again.
    Documents over ``CACHED_DOCUMENT_CHARS`` are not cached either: Strawberry parses them.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is None or len(context.query) > CACHED_DOCUMENT_CHARS:
            yield
            return
        try:
            document = self.cached_parse_document(context.query, **context.parse_options)
        except Exception:  # noqa: S110 - Strawberry parses again and reports it properly
            pass
        else:
            context.graphql_document = unlink_tokens(document)
        yield


def unlink_tokens(document: DocumentNode) -> DocumentNode:
    """``document`` without the links between its tokens, which only the parser needs.

    graphql-core's tokens form a doubly linked list that every node's location holds, so each
    parsed document is one large reference cycle. A cached document lives long enough to be
    promoted to the oldest generation, and when the cache drops it, only a full collection frees
    it: under a flood of distinct documents that garbage piled up by the megabyte between full
    collections (which ``serve`` makes rare). Unlinked, a dropped document is freed at once by
    reference counting. Locations keep their offsets and source, so errors still say where.
    """
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        following = token.next
        token.prev = token.next = None
        token = following
    return document


def _response_name(node: FieldNode) -> str:
    return node.alias.value if node.alias is not None else node.name.value


class _Shape:
    """A document's selections with every spread at full size, and its most repeated response name.

    Each fragment is measured once and its measure reused wherever it is spread, so this is
    linear in the document even when spreads multiply what validation has to compare.
    """

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        # A fragment's selections, and its top level's response names (what merges into the spreader's).
        self.memo: dict[str, tuple[int, Counter[str]]] = {}
        self.most_repeated = 0
        self.selections = sum(self.measure(d.selection_set)[0] for d in document.definitions
                              if isinstance(d, OperationDefinitionNode))

    def measure(self, selection_set: SelectionSetNode | None) -> tuple[int, Counter[str]]:
        names: Counter[str] = Counter()
        if selection_set is None:
            return 0, names
        size = self._gather(selection_set, names)
        if names:
            self.most_repeated = max(self.most_repeated, max(names.values()))
        return size, names

    def _gather(self, selection_set: SelectionSetNode, names: Counter[str]) -> int:
        size = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                names[_response_name(node)] += 1
                size += 1 + self.measure(node.selection_set)[0]
            elif isinstance(node, InlineFragmentNode):
                size += self._gather(node.selection_set, names)
            elif isinstance(node, FragmentSpreadNode):
                spread_size, spread_names = self._fragment(node.name.value)
                size += spread_size
                names.update(spread_names)
        return size

    def _fragment(self, name: str) -> tuple[int, Counter[str]]:
        known = self.memo.get(name)
        if known is not None:
            return known
        self.memo[name] = (0, Counter())  # a cycle counts nothing here: the spec's rule reports it
        node = self.fragments.get(name)
        if node is None:
            return self.memo[name]
        names: Counter[str] = Counter()
        measured = (self._gather(node.selection_set, names), names)
        self.memo[name] = measured
        return measured


class BudgetedValidation(ValidationCache):
    """Validation, after a check of the document's shape that keeps it cheap (see the module's doc).

    A document over either budget gets one error and is not validated further. Documents over
    ``CACHED_DOCUMENT_CHARS`` are validated without the cache, so it holds small documents only.
    """

    def __init__(self, max_selections: int, max_repeats: int) -> None:
        super().__init__()
        self.max_selections = max_selections
        self.max_repeats = max_repeats

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        shape = _Shape(document)
        if shape.selections > self.max_selections:
            message = (f"the document makes {shape.selections} selections (fragments counted where they are "
                       f"spread); the limit is {self.max_selections}")
        elif shape.most_repeated > self.max_repeats:
            message = (f"a response name is selected {shape.most_repeated} times in one selection set; "
                       f"the limit is {self.max_repeats}")
        elif context.query is not None and len(context.query) <= CACHED_DOCUMENT_CHARS:
            yield from super().on_validate()
            return
        else:
            yield  # Strawberry validates it, uncached
            return
        context.pre_execution_errors = [GraphQLError(message)]
        yield
