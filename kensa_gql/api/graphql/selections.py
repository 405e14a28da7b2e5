"""What a query asks of a field's result, read from Strawberry's public ``info.selected_fields``.

A resolver that can skip work the client did not ask for (a read only one field needs) asks
``selects`` whether that field is in the selection, through any fragments. It is asked lazily,
only when the work would otherwise be done: converting the selection costs a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection


def _included(selection: Selection) -> bool:
    """False for a selection whose @skip or @include leaves it out (its arguments already resolved)."""
    directives = selection.directives
    if not directives:
        return True
    return directives.get("skip", {}).get("if") is not True and directives.get("include", {}).get("if") is not False


def selects(selections: Iterable[Selection], path: Sequence[str]) -> bool:
    """Whether ``selections`` ask for the field at ``path`` (GraphQL names, outermost first),
    directly, through fragment spreads or through inline fragments, under any alias."""
    name, rest = path[0], path[1:]
    for selection in selections:
        if not _included(selection):
            continue
        if isinstance(selection, SelectedField):
            if selection.name == name and (not rest or selects(selection.selections, rest)):
                return True
        elif selects(selection.selections, path):
            return True
    return False


def asks_for(info: Info[Any, Any], *path: str) -> bool:
    """Whether the resolving field's selection asks for the field at ``path`` below it."""
    return selects(info.selected_fields, (info.field_name, *path))
