"""The schema: one Query, Mutation and Subscription assembled from the areas, plus its defences."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from kensa_gql import logs, tracing
from kensa_gql.api.graphql.account import AccountQueries
from kensa_gql.api.graphql.errors import ErrorCodes, log_unexpected
from kensa_gql.api.graphql.limits import BudgetedValidation, SafeParserCache, max_aliases_rule, max_depth_rule
from kensa_gql.api.graphql.metered import OperationMetrics
from kensa_gql.api.graphql.models import ModelQueries
from kensa_gql.api.graphql.videos import VideoMutations, VideoQueries, VideoSubscriptions
from kensa_gql.api.graphql.webhooks import WebhookMutations, WebhookQueries
from kensa_gql.settings import Settings


@strawberry.type(description="Reading: the caller, the catalogue, videos and credits.")
class Query(AccountQueries, ModelQueries, VideoQueries, WebhookQueries):
    pass


@strawberry.type(description="Making and deleting videos; managing webhook endpoints.")
class Mutation(VideoMutations, WebhookMutations):
    pass


@strawberry.type(description="Live updates over WebSocket (graphql-transport-ws or legacy graphql-ws) or over "
                             "HTTP (a POST accepting multipart/mixed).")
class Subscription(VideoSubscriptions):
    pass


class KensaSchema(strawberry.Schema):
    async def execute(self, query: str | None, variable_values: dict[str, Any] | None = None,
                      context_value: Any | None = None, root_value: Any | None = None,
                      operation_name: str | None = None,
                      allowed_operation_types: Iterable[OperationType] | None = None,
                      operation_extensions: dict[str, Any] | None = None) -> ExecutionResult:
        # execute answers once: a subscription needs a stream (a WebSocket, or a POST that accepts
        # multipart/mixed, which Strawberry sends to ``stream``). Strawberry would run its
        # resolver as a query and fail inside graphql-core; refused here, it is the client's 400.
        if operation_name:
            logs.note(operation=operation_name)
        allowed = {OperationType.QUERY, OperationType.MUTATION}.intersection(
            allowed_operation_types if allowed_operation_types is not None else OperationType)
        return await super().execute(query, variable_values, context_value, root_value, operation_name,
                                     allowed, operation_extensions)

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        # Strawberry logs every error; expected ones (NOT_FOUND, bad input) are not worth a traceback.
        context = execution_context.context if execution_context is not None else None
        log_unexpected(errors, getattr(context, "request_id", None))


def extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """The per-operation extensions, configured by ``settings``; rules are built here, once."""
    rules: list[type[ASTValidationRule]] = [max_depth_rule(settings.graphql_max_depth),
                                         max_aliases_rule(settings.graphql_max_aliases)]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    max_tokens = settings.graphql_max_tokens
    selections, repeats = settings.graphql_max_selections, settings.graphql_max_repeated_fields
    hide_suggestions = not settings.introspection
    return [
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        SafeParserCache,
        # The same rule classes every time, so ValidationCache's key repeats and it hits.
        lambda: AddValidationRules(rules),
        lambda: BudgetedValidation(max_selections=selections, max_repeats=repeats),
        lambda: ErrorCodes(hide_suggestions=hide_suggestions),
        OperationMetrics,
        *([tracing.graphql_extension()] if tracing.enabled else []),
    ]


def build_schema(settings: Settings,
                 extra_extensions: Sequence[Callable[[], SchemaExtension]] = ()) -> KensaSchema:
    """The schema for ``settings``; ``extra_extensions`` run after ours (the fast path's RememberPrepared)."""
    config = StrawberryConfig(disable_field_suggestions=not settings.introspection)
    ext: list[Any] = [*extensions(settings), *extra_extensions]
    return KensaSchema(query=Query, mutation=Mutation, subscription=Subscription, extensions=ext, config=config)


def export_schema() -> str:
    """The SDL clients code against (``kensa-gql export-schema`` prints it; schema.graphql holds it)."""
    schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
    return schema.as_str() + "\n"
