"""``asks_for``: whether a resolver's selection reaches a field, through fragments, aliases and directives."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from strawberry.types import Info

from kensa_gql.api.graphql.selections import asks_for


@strawberry.type
class Item:
    x: int | None = None
    y: int = 0


@strawberry.type
class Page:
    items: list[Item]
    other: Item


@strawberry.type
class Query:
    @strawberry.field
    def page(self, info: Info[Any, None]) -> Page:
        info.context["asked"].append(asks_for(info, "items", "x"))
        return Page(items=[Item()], other=Item())


SCHEMA = strawberry.Schema(query=Query)


@pytest.mark.parametrize(("document", "variables", "asked"), [
    ("{ page { items { x } } }", {}, True),
    ("{ p: page { i: items { y another: x } } }", {}, True),
    ("{ page { items { y } other { x } } }", {}, False),
    ("{ page { ... on Page { items { ... { x } } } } }", {}, True),
    ("{ page { ...P } } fragment P on Page { items { ...I } } fragment I on Item { y ...X } "
     "fragment X on Item { x }", {}, True),
    ("{ page { ...P } } fragment P on Page { items { y } }", {}, False),
    ("query Q($on: Boolean!) { page { items { x @include(if: $on) } } }", {"on": True}, True),
    ("query Q($on: Boolean!) { page { items { x @include(if: $on) } } }", {"on": False}, False),
    ("query Q($off: Boolean!) { page { ...I @skip(if: $off) } } fragment I on Page { items { x } }",
     {"off": True}, False),
    ("{ page { items { y } } page { items { x } } }", {}, True),  # merged: every node of the field counts
])
def test_asks_for_follows_fragments_aliases_and_directives(document: str, variables: dict[str, Any],
                                                           asked: bool) -> None:
    context: dict[str, Any] = {"asked": []}
    result = SCHEMA.execute_sync(document, variable_values=variables, context_value=context)
    assert result.errors is None
    assert context["asked"] == [asked]
