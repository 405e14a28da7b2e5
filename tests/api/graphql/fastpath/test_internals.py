"""Every private part of Strawberry the fast path uses (fastpath/strawberry_internals.py), named
once: an upgrade that moves or changes one fails here, in one place, not somewhere in a plan."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, GraphQLSyntaxError, Source, build_schema
from strawberry.types.field import StrawberryField

from kensa_gql.api.graphql.fastpath import strawberry_internals as internals
from kensa_gql.api.graphql.schema import build_schema as build_kensa_schema
from kensa_gql.settings import Settings


@strawberry.type
class Query:
    plain: str = "x"

    @strawberry.field
    def computed(self) -> str:
        return "y"


SCHEMA = strawberry.Schema(query=Query)


def _field(name: str) -> Any:
    return internals.core_schema(SCHEMA).query_type.fields[name]  # type: ignore[union-attr]


def test_schema_keeps_graphql_cores_schema_in_underscore_schema() -> None:
    core = internals.core_schema(SCHEMA)
    assert isinstance(core, GraphQLSchema)
    assert set(core.query_type.fields) == {"plain", "computed"}  # type: ignore[union-attr]


def test_a_graphql_field_points_back_to_its_strawberry_field() -> None:
    definition = internals.strawberry_field(_field("computed"))
    assert isinstance(definition, StrawberryField) and definition.python_name == "computed"
    assert internals.strawberry_field(build_schema("type Query { a: Int }").query_type.fields["a"]) is None  # type: ignore[union-attr]


def test_resolvers_are_marked_default_or_wrapped() -> None:
    assert internals.is_default_resolver(_field("plain").resolve)
    assert not internals.is_resolver_wrapper(_field("plain").resolve)
    assert internals.is_resolver_wrapper(_field("computed").resolve)
    assert not internals.is_default_resolver(_field("computed").resolve)
    assert not internals.is_resolver_wrapper(lambda *_: None)  # not Strawberry's: never called directly


def test_field_exception_handlers_are_found_by_the_schema_converter() -> None:
    definition = internals.strawberry_field(_field("computed"))
    assert definition is not None
    assert internals.has_exception_handlers(SCHEMA, definition) is False


def test_the_transport_ws_close_reason_for_pre_execution_errors() -> None:
    # Strawberry closes the socket (4400) for these, and answers with an error message otherwise.
    syntax = GraphQLSyntaxError(Source("{"), 1, "Expected Name")
    assert internals.pre_execution_close_reason(GraphQLError("Unknown field")) is None
    assert internals.pre_execution_close_reason(syntax) == syntax.message


async def test_an_events_errors_are_processed_and_rendered_as_strawberrys_stream_does() -> None:
    schema = build_kensa_schema(Settings(database_url="sqlite+aiosqlite:///unused.db"))
    error = GraphQLError("boom", original_error=RuntimeError("boom"), path=["videoStatus"])
    rendered = await internals.rendered_event(schema, ExecutionResult(None, [error]), query="subscription { x }",
                                              variables={}, context=None, operation_name=None)
    assert rendered.data is None and rendered.errors is not None
    assert [e.extensions for e in rendered.errors] == [{"code": "INTERNAL_SERVER_ERROR"}]  # masked by ErrorCodes
    assert rendered.errors[0].message == "Internal server error"
