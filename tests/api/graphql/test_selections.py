"""``asks_for``: whether a resolver's selection reaches a field, through fragments, aliases and directives."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from strawberry.extensions import ParserCache
from strawberry.types import Info

from kensa_gql.api.graphql import selections
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


# Parsed once per text, as the gateway's schema does: the same operation object comes back.
SCHEMA = strawberry.Schema(query=Query, extensions=[ParserCache])


def asked(document: str, variables: dict[str, Any] | None = None) -> list[bool]:
    context: dict[str, Any] = {"asked": []}
    result = SCHEMA.execute_sync(document, variable_values=variables, context_value=context)
    assert result.errors is None
    return list(context["asked"])


@pytest.mark.parametrize(("document", "variables", "expected"), [
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
    ("query Q($x: Boolean!) { ...A @include(if: $x) page { items { y } } } "
     "fragment A on Query { page { items { x } } }", {"x": True}, True),
])
def test_asks_for_follows_fragments_aliases_and_directives(document: str, variables: dict[str, Any],
                                                           expected: bool) -> None:
    # asked twice: the second time the same parsed operation comes back (remembered where that is exact)
    assert asked(document, variables) == asked(document, variables) == [expected]


SWITCHED = "query Q($on: Boolean!) { page { items { x @include(if: $on) } } }"
SPREAD = ("query Q($x: Boolean!) { ...A @include(if: $x) page { items { y } } } "
          "fragment A on Query { page { items { x } } }")
PLAIN = "query Plain { page { items { x } } }"


def test_an_answer_that_depends_on_the_variables_is_never_remembered() -> None:
    # the same operation, its variables switching the field on and off, inside the selection or above it
    for document, name in ((SWITCHED, "on"), (SPREAD, "x")):
        assert [asked(document, {name: on}) for on in (True, False, True, False)] == [[True], [False]] * 2
    # a plain one is remembered, once
    before = len(selections.remembered)
    assert asked(PLAIN) == asked(PLAIN) == [True]
    assert len(selections.remembered) == before + 1
