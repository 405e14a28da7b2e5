"""The executor's shortcut for plain leaf fields answers exactly what graphql-core answers,
errors included, and is taken only where it may be."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import pytest
import strawberry
from graphql import execute, parse
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from kensa_gql.api.graphql.execution import Execution


@strawberry.enum
class Mood(enum.Enum):
    CALM = "calm"
    LOUD = "loud"


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    count: int
    ratio: float
    on: bool
    mood: Mood
    note: str | None
    big: int  # may be out of Int's 32 bits

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


@strawberry.type
class Broken:
    must: str  # set to None below: graphql-core reports the null


def item(i: int, **changes: Any) -> Item:
    values: dict[str, Any] = {"id": strawberry.ID(str(i)), "name": f"item {i}", "count": i, "ratio": i / 3,
                              "on": i % 2 == 0, "mood": Mood.CALM if i % 2 else Mood.LOUD,
                              "note": None if i % 3 else "n", "big": 7}
    values.update(changes)
    return Item(**values)


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [item(i) for i in range(5)]

    @strawberry.field
    async def later(self) -> list[Item]:
        return [item(i) for i in range(3)]

    @strawberry.field
    def huge(self) -> Item:
        return item(1, big=2**40)

    @strawberry.field
    def broken(self) -> Broken:
        return Broken(must=None)  # type: ignore[arg-type]


SCHEMA = strawberry.Schema(query=Query)

DOCUMENTS = [
    "{ items { id name count ratio on mood note big } }",
    "{ items { __typename id alias: name n2: name } later { mood note } }",
    "query($skip: Boolean!) { items { id name @skip(if: $skip) count @include(if: $skip) } }",
    "{ items { ...F } } fragment F on Item { id ratio ... on Item { on } }",
    "{ items { name shout } }",
    "{ huge { id big } }",
    "{ broken { must } }",
]


def run(document: str, executor: Any) -> dict[str, Any]:
    result = execute(SCHEMA._schema, parse(document), variable_values={"skip": True}, executor_class=executor)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return result.formatted  # type: ignore[union-attr]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_results_and_errors_are_graphql_cores(document: str) -> None:
    assert run(document, Execution) == run(document, StrawberryGraphQLCoreExecutionContext)


class Counting(Execution):
    """Counts the fields that went graphql-core's way (each builds a resolve info)."""

    built = 0

    def build_resolve_info(self, *args: Any) -> Any:
        Counting.built += 1
        return super().build_resolve_info(*args)


@pytest.mark.parametrize(("document", "slow_fields"), [
    ("{ items { id name count ratio on mood note __typename } }", 1),  # only the root field
    ("{ items { id shout } }", 1 + 5 * 2),   # a resolver in the selection: all of it goes the usual way
    ("{ huge { id big } }", 1 + 2),          # 2**40 is no Int: graphql-core reports it
])
def test_the_shortcut_is_taken_for_plain_leaves_only(document: str, slow_fields: int) -> None:
    Counting.built = 0
    run(document, Counting)
    assert Counting.built == slow_fields
