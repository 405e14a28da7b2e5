"""Every private part of Strawberry the fast path relies on, in one place, each with its reason.

The fast path answers exactly as Strawberry would, and some of what Strawberry does is not public
API. Each use is wrapped here, and tests/api/graphql/fastpath/test_internals.py names every one,
so that an upgrade that moves one fails there, loudly, rather than somewhere in a plan.
"""

from __future__ import annotations

from typing import Any

from graphql import ExecutionResult as CoreResult
from graphql import GraphQLError, GraphQLField, GraphQLSchema
from strawberry import Schema
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

# Where Strawberry keeps a GraphQLField's StrawberryField (schema_converter.from_field).
FIELD_BACKREF = "strawberry-definition"


def core_schema(schema: BaseSchema) -> GraphQLSchema:
    """graphql-core's schema inside Strawberry's: plans and lean subscribers execute against it."""
    core: GraphQLSchema = schema._schema  # type: ignore[attr-defined]
    return core


def strawberry_field(field_def: GraphQLField) -> StrawberryField | None:
    """The StrawberryField behind a graphql-core field: how plans call its resolver as Strawberry does."""
    definition = (field_def.extensions or {}).get(FIELD_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


def is_default_resolver(resolve: Any) -> bool:
    """Whether Strawberry gave the field its plain attribute resolver (marked ``_is_default``):
    then a plan may read the attribute itself."""
    return bool(getattr(resolve, "_is_default", False))


def is_resolver_wrapper(resolve: Any) -> bool:
    """Whether ``resolve`` is Strawberry's wrapper around a field's own resolver (``_is_default``
    False): the only resolvers plans call directly, as that wrapper would."""
    return getattr(resolve, "_is_default", True) is False


def has_exception_handlers(schema: BaseSchema, definition: StrawberryField) -> bool:
    """Whether Strawberry wraps the field's resolver to handle exceptions: plans leave those to it."""
    return bool(schema.schema_converter._get_field_exception_handlers(definition))


def pre_execution_close_reason(error: GraphQLError) -> str | None:
    """graphql-transport-ws closes the socket (4400, this reason) for some pre-execution errors;
    ours must close for exactly the same ones."""
    reason: str | None = BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(error)
    return reason


async def rendered_event(schema: Schema, core: CoreResult, *, query: str, variables: Any, context: Any,
                         operation_name: str | None) -> ExecutionResult:
    """What Strawberry's stream makes of a subscription event's graphql-core result with errors:
    logged by the schema (``_process_errors``), coded and masked by the extensions' hooks."""
    execution = ExecutionContext(query=query, schema=schema, allowed_operations={OperationType.SUBSCRIPTION},
                                 context=context, variables=variables, root_value=None,
                                 provided_operation_name=operation_name)
    extensions = schema.get_extensions()
    for extension in extensions:
        extension.execution_context = execution
    runner = schema.create_extensions_runner(execution, extensions)
    execution.pre_execution_errors = core.errors
    schema._process_errors(core.errors or [], execution)
    result = ExecutionResult(data=core.data, errors=core.errors)
    async with runner.operation():
        execution.result = result
    async with runner.on_stream_result(result):
        pass
    return result
