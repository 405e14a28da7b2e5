"""Counts every GraphQL operation Strawberry executes, by name and type (kensa_gql/metrics.py).

The fast path's compiled answers and lean subscribers never reach Strawberry's extensions; they
count themselves with the same function (fastpath/post.py, ws/connection.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from kensa_gql import metrics


class OperationMetrics(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # no operation to speak of: execution refused it
            return
        metrics.graphql_operation(context.operation_name, kind)
