"""The schema clients code against: the committed SDL, the issue's contract, and descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    build_schema,
    print_type,
)

from kensa_gql.api.graphql.schema import build_schema as build_kensa_schema
from kensa_gql.api.graphql.schema import export_schema
from kensa_gql.cli import main
from kensa_gql.settings import Settings

ROOT = Path(__file__).resolve().parents[3]

# The contract from the issue, verbatim: names, types, nullability and defaults.
CONTRACT = """
type Query {
  me: Viewer!
  models: [VideoModel!]!
  videos(page: Int! = 1, pageSize: Int! = 20): VideoPage!
  video(uuid: ID!): Video
  videoTask(uuid: ID!): VideoTask
  creditHistory(page: Int! = 1, pageSize: Int! = 20): CreditTransactionPage!
  price(input: GenerateVideoInput!): Int!
  webhookEndpoints: [WebhookEndpoint!]!
  webhookDeliveries(endpointId: ID = null, status: WebhookDeliveryStatus = null, page: Int! = 1,
                    pageSize: Int! = 20): WebhookDeliveryPage!
  webhookSigningSecret: String!
}
type Mutation {
  generateVideo(input: GenerateVideoInput!): Video!
  deleteVideo(uuid: ID!): DeleteVideoResult!
  cancelVideo(uuid: ID!): CancelResult!
  retryVideo(uuid: ID!): Video!
  createWebhookEndpoint(url: String!, events: [WebhookEvent!] = null): WebhookEndpointCreated!
  updateWebhookEndpoint(id: ID!, url: String = null, events: [WebhookEvent!] = null,
                        enabled: Boolean = null): WebhookEndpoint!
  deleteWebhookEndpoint(id: ID!): DeleteWebhookEndpointResult!
  rotateWebhookSecret(id: ID!): WebhookEndpointCreated!
  redeliverWebhook(deliveryId: ID!): WebhookDelivery!
}
type Subscription {
  videoStatus(uuid: ID!): Video!
}
type Viewer { id: ID!  email: String!  credits: CreditBalance! }
type CreditBalance { available: Int!  frozen: Int!  used: Int!  total: Int! }
input GenerateVideoInput { prompt: String!  model: String!  duration: Int!  aspectRatio: String!
                           quality: String  startImageUrl: String  idempotencyKey: String
                           deadlineSeconds: Int  webhookUrl: String  webhookEvents: [WebhookEvent!] }
enum VideoStatus { PENDING GENERATING UPLOADING COMPLETED FAILED CANCELLED }
enum FailureCode { CONTENT_POLICY INVALID_INPUT PROVIDER_ERROR PROVIDER_UNAVAILABLE RESULT_UNAVAILABLE
                   STORAGE_ERROR DEADLINE_EXCEEDED TIMEOUT CANCELLED INTERNAL }
type Failure { code: FailureCode!  retryable: Boolean!  message: String! }
enum CancelOutcome { CANCELLED ALREADY_FINISHED NOT_FOUND }
type CancelResult { outcome: CancelOutcome!  video: Video }
type Video { id: ID!  uuid: ID!  prompt: String!  model: String!  status: VideoStatus!  progress: Int!
             provider: String  videoUrl: String  thumbnailUrl: String  startImageUrl: String  duration: Int!
             resolution: String  aspectRatio: String!  fileSize: Int  creditsUsed: Int!  generationTime: Int
             createdAt: String!  completedAt: String  errorMessage: String  failure: Failure  queuePosition: Int }
type VideoTask { uuid: ID!  status: VideoStatus!  progress: Int! }
type VideoPage { videos: [Video!]!  total: Int!  page: Int!  pageSize: Int! }
type VideoModel { id: ID!  name: String!  provider: String!  modes: [String!]!  maxDuration: Int!
                  durations: [Int!]!  resolutions: [String!]!  aspectRatios: [String!]!  enabled: Boolean!
                  prices: [Price!]! }
type Price { duration: Int!  quality: String!  credits: Int! }
type DeleteVideoResult { uuid: ID!  deleted: Boolean! }
type CreditTransaction { id: ID!  transNo: String!  transType: String!  credits: Int!  balanceAfter: Int!
                         videoUuid: ID  createdAt: String! }
type CreditTransactionPage { transactions: [CreditTransaction!]!  total: Int!  page: Int!  pageSize: Int! }
enum WebhookEvent { VIDEO_STARTED VIDEO_PROGRESS VIDEO_COMPLETED VIDEO_FAILED VIDEO_CANCELLED }
enum WebhookDeliveryStatus { PENDING SUCCEEDED FAILED }
type WebhookEndpoint { id: ID!  url: String!  events: [WebhookEvent!]!  enabled: Boolean!  disabledReason: String
                       failingSince: String  previousSecretExpiresAt: String  createdAt: String! }
type WebhookEndpointCreated { endpoint: WebhookEndpoint!  secret: String! }
type DeleteWebhookEndpointResult { id: ID!  deleted: Boolean! }
type WebhookDelivery { id: ID!  endpointId: ID  videoUuid: ID  url: String!  event: WebhookEvent!
                       status: WebhookDeliveryStatus!  attempts: Int!  lastStatusCode: Int  lastResponse: String
                       lastError: String  nextAttemptAt: String  createdAt: String!  deliveredAt: String
                       payload: String! }
type WebhookDeliveryPage { deliveries: [WebhookDelivery!]!  total: Int!  page: Int!  pageSize: Int! }
"""


def _without_descriptions(sdl: str) -> str:
    schema = build_schema(sdl)
    for named in schema.type_map.values():
        named.description = None
        for field in getattr(named, "fields", {}).values():
            field.description = None
            for arg in getattr(field, "args", {}).values():
                arg.description = None
        for value in getattr(named, "values", {}).values():
            value.description = None
    ours = sorted(n for n in schema.type_map if not n.startswith("__"))
    return "\n".join(print_type(schema.type_map[n]) for n in ours)


def test_committed_schema_graphql_is_up_to_date() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == export_schema(), "stale: run `kensa-gql export-schema > schema.graphql`"


def test_export_schema_command_prints_the_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema"]) == 0
    assert capsys.readouterr().out == export_schema()


def test_schema_matches_the_contract_exactly() -> None:
    # Field order aside, every name, type, nullability and default is the contract's, no more, no less.
    def by_field_name(sdl: str) -> str:
        printed = _without_descriptions(sdl)
        blocks = []
        for block in printed.split("\n\n"):
            head, *body = block.splitlines()
            fields = sorted(line for line in body if line != "}")
            blocks.append("\n".join([head, *fields]))
        return "\n\n".join(blocks)

    assert by_field_name(export_schema()) == by_field_name(CONTRACT)


def test_every_type_field_argument_and_value_has_a_description() -> None:
    schema = build_kensa_schema(Settings())._schema
    missing = []
    for name, named in schema.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Boolean", "ID", "Float"):
            continue
        if not named.description:
            missing.append(name)
        if isinstance(named, (GraphQLObjectType, GraphQLInputObjectType)):
            for field_name, field in named.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(named, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in named.values.items() if not value.description]
    assert missing == []
