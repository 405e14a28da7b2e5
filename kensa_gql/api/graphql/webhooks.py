"""Outbound webhooks: the account's endpoints, its default signing secret, the delivery log."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from kensa_gql.api import render
from kensa_gql.api.graphql.arguments import PageArg, PageSizeArg
from kensa_gql.api.graphql.context import Context
from kensa_gql.domain import webhooks as domain
from kensa_gql.domain.paging import page_of
from kensa_gql.services import webhook_endpoints as service


@strawberry.enum(description="What a webhook reports; sent as `type` (`video.started`, ...).")
class WebhookEvent(enum.Enum):
    VIDEO_STARTED = strawberry.enum_value("video.started", description="A provider started making the video.")
    VIDEO_PROGRESS = strawberry.enum_value("video.progress",
                                           description="Progress moved (at most one per 5 s per video).")
    VIDEO_COMPLETED = strawberry.enum_value("video.completed", description="The video is ready.")
    VIDEO_FAILED = strawberry.enum_value("video.failed", description="The video failed; its credits are back.")
    VIDEO_CANCELLED = strawberry.enum_value("video.cancelled", description="The video was cancelled.")


@strawberry.enum(description="Where a delivery stands.")
class WebhookDeliveryStatus(enum.Enum):
    PENDING = strawberry.enum_value("PENDING", description="Waiting for its next attempt.")
    SUCCEEDED = strawberry.enum_value("SUCCEEDED", description="The receiver answered 2xx.")
    FAILED = strawberry.enum_value("FAILED", description="Every attempt of its retry window failed.")


def event_names(events: list[WebhookEvent] | None) -> list[str] | None:
    return None if events is None else [str(e.value) for e in events]


@strawberry.type(description="An endpoint of the caller's account that receives signed webhooks.")
class WebhookEndpoint:
    id: strawberry.ID = strawberry.field(description="The endpoint's id.")
    url: str = strawberry.field(description="Where deliveries are POSTed.")
    events: list[WebhookEvent] = strawberry.field(description="The events it receives.")
    enabled: bool = strawberry.field(description="False once disabled (by its owner, or after 5 days of failures).")
    disabled_reason: str | None = strawberry.field(description="Why it is disabled.")
    failing_since: str | None = strawberry.field(description="The first failure since its last success.")
    previous_secret_expires_at: str | None = strawberry.field(
        description="After a rotation: until when the old secret also signs.")
    created_at: str = strawberry.field(description="When it was made (UTC ISO 8601).")

    @classmethod
    def from_domain(cls, e: domain.Endpoint) -> WebhookEndpoint:
        return cls(id=strawberry.ID(e.public_id), url=e.url, events=[WebhookEvent(v.value) for v in e.events],
                   enabled=e.disabled_at_ms is None, disabled_reason=e.disabled_reason,
                   failing_since=render.timestamp(e.failing_since_ms),
                   previous_secret_expires_at=render.timestamp(e.previous_secret_until_ms),
                   created_at=render.iso_timestamp(e.created_at_ms))


@strawberry.type(description="An endpoint with its signing secret: shown here once, never again.")
class WebhookEndpointCreated:
    endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(description="The `whsec_...` secret its deliveries are signed with.")

    @classmethod
    def from_domain(cls, e: domain.Endpoint) -> WebhookEndpointCreated:
        return cls(endpoint=WebhookEndpoint.from_domain(e), secret=e.secret)


@strawberry.type(description="One event sent (or to be sent) to one destination.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="The event's id: the `webhook-id` header, the same on retries.")
    endpoint_id: strawberry.ID | None = strawberry.field(
        description="The endpoint; null for a video's own `webhookUrl` (or a deleted endpoint).")
    video_uuid: strawberry.ID | None = strawberry.field(description="The video the event is about.")
    url: str = strawberry.field(description="Where it is sent.")
    event: WebhookEvent = strawberry.field(description="What it reports.")
    status: WebhookDeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="Attempts made so far.")
    last_status_code: int | None = strawberry.field(description="The receiver's last HTTP status.")
    last_response: str | None = strawberry.field(description="The start (up to 1 KB) of the last response body.")
    last_error: str | None = strawberry.field(description="Why the last attempt failed without a response.")
    next_attempt_at: str | None = strawberry.field(description="When it is tried next, while PENDING.")
    created_at: str = strawberry.field(description="When the event happened.")
    delivered_at: str | None = strawberry.field(description="When the receiver took it.")
    payload: str = strawberry.field(description="The exact body sent.")

    @classmethod
    def from_domain(cls, d: domain.Delivery) -> WebhookDelivery:
        return cls(id=strawberry.ID(d.event_id),
                   endpoint_id=None if d.endpoint_public_id is None else strawberry.ID(d.endpoint_public_id),
                   video_uuid=None if d.video_uuid is None else strawberry.ID(d.video_uuid), url=d.url,
                   event=WebhookEvent(d.event_type), status=WebhookDeliveryStatus(d.status.value),
                   attempts=d.attempts, last_status_code=d.last_status_code, last_response=d.last_response,
                   last_error=d.last_error, next_attempt_at=render.timestamp(d.next_attempt_at_ms),
                   created_at=render.iso_timestamp(d.created_at_ms), delivered_at=render.timestamp(d.delivered_at_ms),
                   payload=d.payload)


@strawberry.type(description="One page of the caller's webhook deliveries, newest first.")
class WebhookDeliveryPage:
    deliveries: list[WebhookDelivery] = strawberry.field(description="The deliveries on this page.")
    total: int = strawberry.field(description="How many match in all.")
    page: int = strawberry.field(description="This page's number, from 1.")
    page_size: int = strawberry.field(description="Deliveries per page.")


@strawberry.type(description="The outcome of `deleteWebhookEndpoint`.")
class DeleteWebhookEndpointResult:
    id: strawberry.ID = strawberry.field(description="The deleted endpoint.")
    deleted: bool = strawberry.field(description="Always true: failures are errors.")


EndpointIdArg = Annotated[strawberry.ID, strawberry.argument(description="The endpoint's id.")]
EventsArg = Annotated[list[WebhookEvent] | None,
                      strawberry.argument(description="The events to receive; all when omitted.")]


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The caller's webhook endpoints, oldest first.")
    async def webhook_endpoints(self, info: Info[Context, None]) -> list[WebhookEndpoint]:
        items = await service.list_endpoints(await info.context.principal(), deps=info.context.deps)
        return [WebhookEndpoint.from_domain(e) for e in items]

    @strawberry.field(description="The caller's webhook deliveries, newest first.")
    async def webhook_deliveries(
            self, info: Info[Context, None],
            endpoint_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this endpoint's.")]
            = None,
            status: Annotated[WebhookDeliveryStatus | None, strawberry.argument(description="Only these.")] = None,
            page: PageArg = 1, page_size: PageSizeArg = 20) -> WebhookDeliveryPage:
        paging = page_of(page, page_size)
        items, total = await service.list_deliveries(
            await info.context.principal(), paging, endpoint_id=endpoint_id,
            status=None if status is None else str(status.value), deps=info.context.deps)
        return WebhookDeliveryPage(deliveries=[WebhookDelivery.from_domain(d) for d in items], total=total,
                                   page=paging.page, page_size=paging.page_size)

    @strawberry.field(description="The account's default secret (made on first use): it signs deliveries to "
                                  "the `webhookUrl` given with a video.")
    async def webhook_signing_secret(self, info: Info[Context, None]) -> str:
        return await service.signing_secret(await info.context.principal(), deps=info.context.deps)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Add an endpoint; its secret is in the answer, and only there.")
    async def create_webhook_endpoint(
            self, info: Info[Context, None],
            url: Annotated[str, strawberry.argument(description="An https URL on the public internet.")],
            events: EventsArg = None) -> WebhookEndpointCreated:
        endpoint = await service.create_endpoint(url, event_names(events), await info.context.principal(),
                                                 deps=info.context.deps)
        return WebhookEndpointCreated.from_domain(endpoint)

    @strawberry.mutation(description="Change an endpoint's URL, events, or whether it is enabled.")
    async def update_webhook_endpoint(
            self, info: Info[Context, None], id: EndpointIdArg,
            url: Annotated[str | None, strawberry.argument(description="A new URL.")] = None,
            events: EventsArg = None,
            enabled: Annotated[bool | None, strawberry.argument(
                description="false disables it; true enables it again.")] = None) -> WebhookEndpoint:
        endpoint = await service.update_endpoint(id, await info.context.principal(), url=url,
                                                 events=event_names(events), enabled=enabled,
                                                 deps=info.context.deps)
        return WebhookEndpoint.from_domain(endpoint)

    @strawberry.mutation(description="Delete an endpoint; its waiting deliveries end FAILED.")
    async def delete_webhook_endpoint(self, info: Info[Context, None], id: EndpointIdArg,
                                      ) -> DeleteWebhookEndpointResult:
        deleted = await service.delete_endpoint(id, await info.context.principal(), deps=info.context.deps)
        return DeleteWebhookEndpointResult(id=strawberry.ID(deleted), deleted=True)

    @strawberry.mutation(description="A new secret for an endpoint (shown once); the old one also signs for 24 h.")
    async def rotate_webhook_secret(self, info: Info[Context, None], id: EndpointIdArg) -> WebhookEndpointCreated:
        endpoint = await service.rotate_secret(id, await info.context.principal(), deps=info.context.deps)
        return WebhookEndpointCreated.from_domain(endpoint)

    @strawberry.mutation(description="Send a delivery again now, with the same `webhook-id`.")
    async def redeliver_webhook(
            self, info: Info[Context, None],
            delivery_id: Annotated[strawberry.ID, strawberry.argument(description="The delivery's id.")],
    ) -> WebhookDelivery:
        delivery = await service.redeliver(delivery_id, await info.context.principal(), deps=info.context.deps)
        return WebhookDelivery.from_domain(delivery)
