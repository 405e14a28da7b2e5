"""Calling a field's Strawberry resolver the way Strawberry's own resolver wrapper does.

Strawberry wraps every resolver for graphql-core: it builds its ``Info`` from graphql-core's
resolve info, converts the coerced arguments to Python (snake_case names, input types), adds
``self``, ``root``/``parent`` and ``info`` where the resolver asks for them, and calls it. A
compiled plan (see compiled.py) does the same here, with what does not change between requests
worked out once: the argument names, and the arguments themselves when the document spells
them out literally. Only fields the wrapper would call as plainly are accepted (no field
extensions, permission classes or exception handlers): ``callable_field`` says which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import strawberry
from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    ListValueNode,
    ObjectValueNode,
    Undefined,
    ValueNode,
    VariableNode,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path
from strawberry import Schema
from strawberry.execution import optimized_is_awaitable
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.field import StrawberryField

from kensa_gql.api.graphql.fastpath.strawberry_internals import (
    core_schema,
    has_exception_handlers,
    is_resolver_wrapper,
    strawberry_field,
)

if TYPE_CHECKING:
    from graphql import FragmentDefinitionNode, OperationDefinitionNode

NO_VARIABLES = VariableValues({}, {})
# Strawberry passes values of these argument types on unchanged (convert_argument's leaf case).
_AS_GIVEN: tuple[Any, ...] = (str, int, float, bool, strawberry.ID)
# Immutable values: a literal argument computed once can be handed to every request.
_IMMUTABLE = (str, int, float, bool, type(None))


def callable_field(schema: Schema, field_def: GraphQLField) -> StrawberryField | None:
    """The field's definition if its resolver may be called directly, else None."""
    definition = strawberry_field(field_def)
    if definition is None or definition.base_resolver is None or definition.extensions:
        return None
    resolve = field_def.resolve
    if resolve is None or not is_resolver_wrapper(resolve):
        return None  # not Strawberry's own wrapper for this resolver
    if has_exception_handlers(schema, definition):
        return None
    return definition


def _mentions_variables(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_mentions_variables(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_mentions_variables(f.value) for f in value.fields)
    return False


def _as_given(argument_type: Any) -> bool:
    """True if Strawberry hands a value of this argument type to the resolver unchanged."""
    if isinstance(argument_type, StrawberryMaybe):
        return False  # wrapped in Some()
    if isinstance(argument_type, StrawberryOptional):
        argument_type = argument_type.of_type
    return any(argument_type is kind for kind in _AS_GIVEN)


class FieldCall:
    """One field of one selection: its resolver called with what Strawberry would pass it."""

    def __init__(self, schema: Schema, definition: StrawberryField, field_def: GraphQLField,
                 parent_type: GraphQLObjectType, nodes: list[FieldNode], path: Path,
                 fragments: dict[str, FragmentDefinitionNode], operation: OperationDefinitionNode) -> None:
        node = nodes[0]
        self._definition = definition
        self._field_def = field_def
        self._node = node
        self._config = schema.config
        self._registry = schema.schema_converter.scalar_registry
        self._info_class = schema.config.info_class
        # GraphQLResolveInfo's leading fields, as graphql-core's executor would fill them in.
        self._head = (node.name.value, nodes, field_def.type, parent_type, path, core_schema(schema), fragments)
        self._operation = operation
        self.is_async = definition.is_async
        resolver = definition.base_resolver
        assert resolver is not None
        self._with_self = resolver.self_parameter is not None
        self._source_names = tuple(p.name for p in (resolver.parent_parameter, resolver.root_parameter)
                                   if p is not None)
        self._info_name = None if resolver.info_parameter is None else resolver.info_parameter.name
        converter = schema.config.name_converter
        # (GraphQL name, Python name) per argument when every one is passed on unchanged.
        self._names = (tuple((converter.from_argument(a), a.python_name) for a in definition.arguments)
                       if all(_as_given(a.type) for a in definition.arguments) else None)
        self._coerced: dict[str, Any] | None = None
        self._converted: dict[str, Any] | None = None
        # (variable, Python name, non-null) when every argument is given as a variable: graphql-core
        # takes a variable's coerced value as it is, unless it is missing or null for a non-null one.
        self._from_variables: tuple[tuple[str, str, bool], ...] | None = None
        given = {a.name.value: a.value for a in node.arguments or ()}
        python = dict(self._names or ())
        if python and set(python) == set(given) == set(field_def.args) and all(
                isinstance(v, VariableNode) and field_def.args[n].out_name is None for n, v in given.items()):
            self._from_variables = tuple(
                (cast(VariableNode, given[n]).name.value, python[n], isinstance(a.type, GraphQLNonNull))
                for n, a in field_def.args.items())
        if not (field_def.args or node.arguments):
            self._coerced = {}
        elif not any(_mentions_variables(a.value) for a in node.arguments or ()):
            coerced = get_argument_values(field_def, node, NO_VARIABLES)  # GraphQLError: not compiled
            if all(isinstance(v, _IMMUTABLE) for v in coerced.values()):
                self._coerced = coerced
        if self._coerced is not None and self._names is not None:
            self._converted = self._convert(self._coerced, None)

    def _convert(self, coerced: dict[str, Any], info: Any) -> dict[str, Any]:
        if self._names is not None:
            return {python: coerced[graphql] for graphql, python in self._names if graphql in coerced}
        return convert_arguments(coerced, self._definition.arguments, scalar_registry=self._registry,
                                 config=self._config, info=info)

    def _variables(self, coerced: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments from the variables' values, or None where graphql-core has more to do."""
        assert self._from_variables is not None
        kwargs: dict[str, Any] = {}
        for variable, python, non_null in self._from_variables:
            value = coerced.get(variable, Undefined)
            if value is Undefined or (value is None and non_null):
                return None
            kwargs[python] = value
        return kwargs

    def __call__(self, source: Any, context: Any, root_value: Any, variables: VariableValues) -> Any:
        """The resolver's result (an awaitable for an async resolver); raises what it raises."""
        raw = GraphQLResolveInfo(*self._head, root_value, self._operation, variables, context,
                                 optimized_is_awaitable, None, None)  # type: ignore[arg-type]
        info = self._info_class(_raw_info=raw, _field=self._definition)
        kwargs = self._converted
        if kwargs is None and self._from_variables is not None:
            kwargs = self._variables(variables.coerced)
        if kwargs is None:
            coerced = self._coerced
            if coerced is None:
                coerced = get_argument_values(self._field_def, self._node, variables)
            kwargs = self._convert(coerced, info)
        elif kwargs is self._converted:
            kwargs = dict(kwargs)
        for name in self._source_names:
            kwargs[name] = source
        if self._info_name is not None:
            kwargs[self._info_name] = info
        return self._definition.get_result(source, info=info, args=[source] if self._with_self else [],
                                           kwargs=kwargs)
