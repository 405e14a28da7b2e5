"""The graphql-core executor the schema runs on: graphql-core's own, with two shortcuts.

Leaf fields. graphql-core spends about 3 us on every field it resolves (a path, a resolve-info
object, the resolver call, then completing the value); a page of 20 videos has 380 of them.
Most of ours are plain attributes: a Strawberry field without a resolver, arguments or field
extensions, of a scalar or enum type. For a selection made only of those (and ``__typename``),
this executor reads the attributes and coerces them itself, in a fraction of the time. Anything
else, and any value that would be an error (a null in a non-null field, a value the scalar
refuses), goes through graphql-core's path, which produces exactly its usual result or error.

Subscription events: see fanout.py (one execution per change for all of its subscribers).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path

from kensa_gql.api.graphql.compiled import AS_IS, INT32
from kensa_gql.api.graphql.fanout import SharedEventExecution
from kensa_gql.api.graphql.field_calls import strawberry_field

# (response key, attribute name or None for __typename, leaf type, non-null, the Python type the
# scalar passes through unchanged or None)
_Leaf = tuple[str, str | None, Any, bool, type | None]
PLANS = 1024  # selections remembered, oldest forgotten first
_plans: dict[tuple[int, ...], tuple[object, list[_Leaf] | None]] = {}


def _leaf_plan(parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Leaf] | None:
    """How to read every field of ``fields`` straight off the source, or None if one cannot be."""
    plan: list[_Leaf] = []
    for key, details in fields.items():
        node = details[0].node
        if node.arguments or any(d.fragment_variable_values is not None for d in details):
            return None
        name = node.name.value
        if name == "__typename":
            plan.append((key, None, None, True, None))
            continue
        field = parent_type.fields.get(name)
        if field is None or field.args or not getattr(field.resolve, "_is_default", False):
            return None
        definition = strawberry_field(field)
        if definition is None or definition.extensions or definition.default_resolver is not getattr:
            return None
        kind, non_null = field.type, False
        if isinstance(kind, GraphQLNonNull):
            kind, non_null = kind.of_type, True
        if not is_leaf_type(kind):
            return None
        plan.append((key, definition.python_name, kind, non_null, AS_IS.get(kind)))
    return plan


class Execution(SharedEventExecution):
    """graphql-core's executor with plain leaf selections read directly."""

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
                       grouped_field_set: GroupedFieldSet, position_context: Any) -> Any:
        plan = self._plan_for(parent_type, grouped_field_set)
        if plan is not None:
            results = self._read_leaves(plan, parent_type, source_value)
            if results is not None:
                return results
        return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)

    def _plan_for(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Leaf] | None:
        if self.middleware_manager is not None and self.middleware_manager.middlewares:
            return None  # a middleware must see every resolver call
        # By the identity of the type and of the field nodes: parsed documents are cached, so the
        # same selection meets the same nodes request after request. The entry holds them, so
        # their ids cannot be reused while it exists.
        nodes = [details[0].node for details in fields.values()]
        key = (id(parent_type), *map(id, nodes))
        known = _plans.get(key)
        if known is not None:
            return known[1]
        plan = _leaf_plan(parent_type, fields)
        _plans[key] = ((parent_type, nodes), plan)
        if len(_plans) > PLANS:
            _plans.pop(next(iter(_plans)))
        return plan

    @staticmethod
    def _read_leaves(plan: list[_Leaf], parent_type: GraphQLObjectType, source: Any) -> dict[str, Any] | None:
        """The selection's result, or None if any value needs graphql-core's care."""
        results: dict[str, Any] = {}
        try:
            for key, attribute, kind, non_null, as_is in plan:
                if attribute is None:
                    results[key] = parent_type.name
                    continue
                value = getattr(source, attribute)
                if value is None:
                    if non_null:
                        return None
                    results[key] = None
                    continue
                if type(value) is as_is and (as_is is not int or value in INT32):
                    results[key] = value
                    continue
                coerced = kind.coerce_output_value(value)
                if coerced is None or coerced is Undefined:
                    return None
                results[key] = coerced
        except Exception:
            return None
        return results

