"""Compiled plans on a tiny schema: graphql-core's data where they answer, Fallback where they must not.

The live schema cannot produce most of what a plan has to refuse (a null in a non-null field,
an Int beyond 32 bits, a generator for a list ...), so these cases use a schema made for them.
Each answer is compared with Strawberry's own execution of the same document.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from typing import Any, cast

import pytest
import strawberry
from graphql import OperationDefinitionNode, parse
from strawberry.extensions import FieldExtension
from strawberry.types import Info

from kensa_gql.api.graphql.fastpath.compiled import Fallback, NotCompiled, OperationPlan
from kensa_gql.api.graphql.schema import KensaSchema


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.input
class Filter:
    prefix: str
    colors: list[Color] | None = None


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Item:
    name: str
    size: int | None
    big: int
    ratio: float
    tags: list[str]
    color: Color
    flag: bool
    maybe_color: Color | None = None

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


@strawberry.type
class Person(Named):  # implements an interface: Strawberry gives it an is_type_of check
    age: int


class Upper(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.type
class Holder:
    item: Item

    @strawberry.field
    async def later(self, info: Info, n: int = 2) -> int:
        await asyncio.sleep(0)
        return n * info.context["factor"]


def _item(key: str, **changes: Any) -> Item:
    values: dict[str, Any] = {"name": key, "size": None, "big": 7, "ratio": 0.5, "tags": ["a", "b"],
                              "color": Color.BLUE, "flag": True, **changes}
    return Item(**values)


ITEMS = {"a": _item("a"), "b": _item("b", size=3, maybe_color=Color.RED), "huge": _item("huge", big=2**40),
         "nan": _item("nan", ratio=float("nan")), "none": _item("none", name=None), "gen": _item("gen", tags=None),
         "error": _item("error", color=ValueError("not a colour"))}


async def _sleep_then(value: int) -> int:
    await asyncio.sleep(0)
    return value


@strawberry.type
class Query:
    @strawberry.field
    def item(self, name: str = "a") -> Item | None:
        return ITEMS.get(name)

    @strawberry.field
    def strict(self, name: str) -> Item:
        return ITEMS[name]

    @strawberry.field
    def items(self, filter: Filter | None = None) -> list[Item]:
        found = [i for i in ITEMS.values() if filter is None or (i.name or "").startswith(filter.prefix)]
        if filter is not None and filter.colors is not None:
            found = [i for i in found if i.color in filter.colors]
        return found[:2]

    @strawberry.field
    def by_color(self, color: Color) -> list[Item]:
        return [i for i in ITEMS.values() if i.color == color][:2]

    @strawberry.field
    def holder(self) -> Holder:
        return Holder(item=ITEMS["b"])

    @strawberry.field
    def numbers(self, kind: str = "list") -> list[int] | None:
        return {"list": [1, 2], "tuple": (3, 4), "generator": (i for i in range(2)), "none": None}[kind]

    @strawberry.field
    def sneaky(self) -> int:
        return cast(int, _sleep_then(1))

    @strawberry.field
    def named(self) -> Named:
        return Person(name="Ada", age=36)

    @strawberry.field
    def person(self) -> Person:
        return Person(name="Ada", age=36)

    @strawberry.field(extensions=[Upper()])
    def loud(self) -> str:
        return "quiet"

    @strawberry.field
    def failing(self) -> str | None:
        raise LookupError("no")


SCHEMA = cast(KensaSchema, strawberry.Schema(query=Query))
CONTEXT = {"factor": 10}


def _plan(document: str) -> tuple[OperationPlan, OperationDefinitionNode]:
    parsed = parse(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    return OperationPlan(SCHEMA, parsed, operation), operation


async def _compiled(document: str, variables: dict[str, Any] | None = None) -> Any:
    plan, _ = _plan(document)
    coerced = plan.variables(variables or {})
    return await plan.program(coerced)(None, CONTEXT, coerced)


async def _strawberry(document: str, variables: dict[str, Any] | None = None) -> Any:
    result = await SCHEMA.execute(document, variable_values=variables, context_value=CONTEXT)
    return result


ANSWERED = [
    ("{ item { name size big ratio tags color flag maybeColor shout __typename } }", None),
    ('{ item(name: "b") { name size maybeColor } none: item(name: "missing") { name } }', None),
    ("query($n: String!) { strict(name: $n) { name } }", {"n": "b"}),
    ("query($n: String = \"b\") { item(name: $n) { name } }", None),
    ('{ items(filter: {prefix: "b"}) { name big } }', None),
    ("query($f: Filter) { items(filter: $f) { name color } }", {"f": {"prefix": "", "colors": ["RED"]}}),
    ("query($c: Color!) { byColor(color: $c) { name } }", {"c": "BLUE"}),
    ("{ byColor(color: RED) { name } }", None),
    ("{ holder { item { name } later twice: later(n: 3) } }", None),
    ("query($n: Int!) { holder { later(n: $n) } }", {"n": 5}),
    ('{ numbers numbers2: numbers(kind: "tuple") none: numbers(kind: "none") }', None),
    ('{ item(name: "a") { ... on Item { name } ...Sizes } } fragment Sizes on Item { size big }', None),
]


@pytest.mark.parametrize(("document", "variables"), ANSWERED)
async def test_a_plan_gives_graphql_cores_data(document: str, variables: dict[str, Any] | None) -> None:
    expected = await _strawberry(document, variables)
    assert expected.errors is None
    assert await _compiled(document, variables) == expected.data


# Values graphql-core reports as errors; the plan leaves them to it.
FALLBACKS = [
    ('{ strict(name: "none") { name } }', None, "a null in a non-null position"),
    ('{ item(name: "none") { name } }', None, "a null in a non-null position"),
    ('{ item(name: "huge") { big } }', None, "refused a value"),
    ('{ item(name: "nan") { ratio } }', None, "refused a value"),
    ('{ item(name: "gen") { tags } }', None, "a null in a non-null position"),
    ('{ item(name: "error") { color } }', None, "an error value"),
    ("query($n: Int!) { holder { later(n: $n) } }", {"n": "5"}, "variables with errors"),
    ("query($n: Int!) { holder { later(n: $n) } }", {}, "variables with errors"),
]


@pytest.mark.parametrize(("document", "variables", "reason"), FALLBACKS)
async def test_what_graphql_core_would_report_falls_back(document: str, variables: dict[str, Any] | None,
                                                         reason: str) -> None:
    assert (await _strawberry(document, variables)).errors
    with pytest.raises(Fallback, match=reason):
        await _compiled(document, variables)


@pytest.mark.parametrize(("document", "reason"), [
    ('{ numbers(kind: "generator") }', "a list given as generator"),
    ("{ sneaky }", "a synchronous resolver returned an awaitable"),
])
async def test_what_graphql_core_accepts_unusually_falls_back_too(document: str, reason: str) -> None:
    assert not (await _strawberry(document)).errors
    with pytest.raises(Fallback, match=reason):
        await _compiled(document)


async def test_a_raising_resolver_raises_for_the_usual_path_to_render() -> None:
    assert (await _strawberry("{ failing }")).errors
    with pytest.raises(LookupError):
        await _compiled("{ failing }")


@pytest.mark.parametrize(("document", "reason"), [
    ("mutation { x }", "a mutation"),
    ("{ named { name } }", "abstract type"),
    ("{ person { name age } }", "Person.is_type_of"),
    ("{ items { shout } }", "a resolver inside a list"),
    ("{ loud }", "the field Query.loud"),
    ("{ __schema { queryType { name } } }", "introspection"),
    ('{ __type(name: "Item") { name } }', "introspection"),
])
async def test_what_a_plan_does_not_handle_is_refused(document: str, reason: str) -> None:
    with pytest.raises(NotCompiled, match=reason):
        await _compiled(document)


def _switches(count: int) -> Iterator[dict[str, bool]]:
    for n in range(2 ** count):
        yield {f"s{i}": bool(n >> i & 1) for i in range(count)}


async def test_each_skip_and_include_combination_has_its_own_plan_up_to_a_limit() -> None:
    names = [f"s{i}" for i in range(5)]
    document = ("query(" + ", ".join(f"${n}: Boolean!" for n in names) + ") { item { "
                + " ".join(f"{f}: name @include(if: ${n})" for f, n in zip("abcde", names, strict=True)) + " } }")
    plan, _ = _plan(document)
    answered = 0
    for variables in _switches(5):
        coerced = plan.variables(variables)
        try:
            data = await plan.program(coerced)(None, CONTEXT, coerced)
        except Fallback as exc:
            assert "too many @skip/@include combinations" in str(exc)
            continue
        answered += 1
        assert data == (await _strawberry(document, variables)).data
    assert answered == 16


async def test_an_operation_that_fails_to_compile_is_refused_once_and_for_all() -> None:
    # Validation would refuse this literal; a plan meeting it anyway leaves it to graphql-core.
    plan, _ = _plan('{ holder { later(n: "three") } }')
    coerced = plan.variables({})
    for _ in range(2):
        with pytest.raises(NotCompiled, match="GraphQLError while compiling"):
            plan.program(coerced)
