"""What a query asks of a field's result, read from Strawberry's public ``info.selected_fields``.

A resolver that can skip work the client did not ask for (a read only one field needs) asks
``asks_for`` whether that field is in the selection, through any fragments. Ask lazily, only
when the work would otherwise be done: converting a selection of twenty-odd fields costs
~25-50 us. A root field's answer is remembered per operation (the parsed document is cached,
so the same operation object comes back), but only where no @skip or @include could change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from graphql import FieldNode, OperationDefinitionNode
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

REMEMBERED = 256  # answers kept; past that the memo starts again
# (operation id, response key, path) -> (the operation, held so its id stays its own; the answer)
remembered: dict[tuple[int, str, tuple[str, ...]], tuple[OperationDefinitionNode, bool]] = {}


class _Switched(Exception):
    """The selection holds @skip or @include: its answer depends on the variables."""


def _included(selection: Selection, strict: bool) -> bool:
    """False for a selection whose @skip or @include leaves it out (arguments already resolved)."""
    directives = selection.directives
    if not directives or ("skip" not in directives and "include" not in directives):
        return True
    if strict:
        raise _Switched()
    return directives.get("skip", {}).get("if") is not True and directives.get("include", {}).get("if") is not False


def selects(selections: Iterable[Selection], path: Sequence[str], *, strict: bool = False) -> bool:
    """Whether ``selections`` ask for the field at ``path`` (GraphQL names, outermost first),
    directly, through fragment spreads or through inline fragments, under any alias.
    ``strict``: raise _Switched on meeting @skip or @include instead of reading them."""
    name, rest = path[0], path[1:]
    for selection in selections:
        if not _included(selection, strict):
            continue
        if isinstance(selection, SelectedField):
            if selection.name == name and (not rest or selects(selection.selections, rest, strict=strict)):
                return True
        elif selects(selection.selections, path, strict=strict):
            return True
    return False


def _fixed_roots(operation: OperationDefinitionNode) -> bool:
    """Whether a root field's nodes are the same in every execution: plain top-level fields only."""
    return all(isinstance(s, FieldNode) and not s.directives for s in operation.selection_set.selections)


def asks_for(info: Info[Any, Any], *path: str) -> bool:
    """Whether the resolving field's selection asks for the field at ``path`` below it."""
    full = (info.field_name, *path)
    at = info.path
    if at.prev is not None:  # not a root field: its nodes depend on its ancestors', not remembered
        return selects(info.selected_fields, full)
    operation = info.operation
    key = (id(operation), str(at.key), full)
    known = remembered.get(key)
    if known is not None and known[0] is operation:
        return known[1]
    selected = info.selected_fields
    try:
        answer = selects(selected, full, strict=True)
    except _Switched:
        return selects(selected, full)
    if _fixed_roots(operation):
        if len(remembered) >= REMEMBERED:
            remembered.clear()
        remembered[key] = (operation, answer)
    return answer
