"""Webhook use cases: an account's endpoints, its default secret, the delivery log, redelivery."""

from __future__ import annotations

from dataclasses import dataclass

from kensa_gql.adapters.db.uow import UnitOfWork
from kensa_gql.adapters.db.webhooks_store import WebhooksStore
from kensa_gql.clock import now_ms
from kensa_gql.domain.errors import BadUserInput, Conflict, NotFound
from kensa_gql.domain.paging import Page
from kensa_gql.domain.text import check_text
from kensa_gql.domain.webhooks import (
    MAX_ENDPOINTS_PER_ACCOUNT,
    ROTATION_OVERLAP_MS,
    Delivery,
    DeliveryStatus,
    Endpoint,
    WebhookEvent,
    new_endpoint_id,
    new_secret,
    parse_events,
)
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps


@dataclass(frozen=True, slots=True)
class VideoWebhook:
    """A generate request's own webhook: where to, and which events."""

    url: str
    events: tuple[WebhookEvent, ...]


def events_of(names: list[str] | None, field: str = "events") -> tuple[WebhookEvent, ...]:
    try:
        return parse_events(names)
    except ValueError as exc:
        raise BadUserInput(f"{field}: {exc}", field=field) from None


async def check_url(url: object, *, deps: Deps, field: str = "url") -> str:
    """A webhook URL that passes the SSRF rules, or BadUserInput naming ``field``."""
    if not isinstance(url, str):
        raise BadUserInput(f"{field}: must be a string", field=field)
    check_text(url, field)
    if deps.webhook_urls is None:
        raise BadUserInput(f"{field}: webhooks are not available", field=field)
    await deps.webhook_urls.check(url, field)
    return url


async def video_webhook_of(raw: dict[str, object], *, deps: Deps) -> VideoWebhook | None:
    """The optional ``webhookUrl`` / ``webhookEvents`` of a generate request, checked."""
    url = raw.get("webhookUrl")
    events = raw.get("webhookEvents")
    if url is None:
        if events is not None:
            raise BadUserInput("webhookEvents: needs webhookUrl", field="webhookEvents")
        return None
    if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
        raise BadUserInput("webhookEvents: must be a list of event names", field="webhookEvents")
    return VideoWebhook(await check_url(url, deps=deps, field="webhookUrl"),
                        events_of(events, "webhookEvents"))


async def attach_video_webhook(uow: UnitOfWork, video_id: int, user_id: int, hook: VideoWebhook) -> None:
    """Store a video's own webhook with it (inside generate's transaction); makes the account's
    default secret if it has none yet."""
    store = WebhooksStore(uow)
    await store.ensure_default_secret(user_id, new_secret(), now_ms())
    await store.set_video_webhook(video_id, hook.url, hook.events)


async def signing_secret(principal: Principal, *, deps: Deps) -> str:
    """The account's default secret (signs deliveries to videos' own webhookUrl), made on first use."""
    async with deps.db.writing() as uow:
        secret = await WebhooksStore(uow).ensure_default_secret(principal.user_id, new_secret(), now_ms())
        await uow.commit()
    return secret


async def create_endpoint(url: str, events: list[str] | None, principal: Principal, *, deps: Deps) -> Endpoint:
    """A new endpoint with its own secret (returned here, and never again in full)."""
    await check_url(url, deps=deps)
    chosen = events_of(events)
    async with deps.db.writing() as uow:
        store = WebhooksStore(uow)
        if await store.count_endpoints(principal.user_id) >= MAX_ENDPOINTS_PER_ACCOUNT:
            raise Conflict(f"at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints per account")
        endpoint = await store.add_endpoint(public_id=new_endpoint_id(), user_id=principal.user_id, url=url,
                                            events=chosen, secret=new_secret(), now_ms=now_ms())
        await uow.commit()
    return endpoint


async def list_endpoints(principal: Principal, *, deps: Deps) -> list[Endpoint]:
    """The caller's endpoints, oldest first."""
    async with deps.db.reading() as uow:
        return await WebhooksStore(uow).endpoints_of(principal.user_id)


async def _owned(store: WebhooksStore, endpoint_id: str, principal: Principal) -> Endpoint:
    if not isinstance(endpoint_id, str):
        raise NotFound("webhook endpoint")
    endpoint = await store.endpoint_owned(endpoint_id, principal.user_id)
    if endpoint is None:
        raise NotFound("webhook endpoint")
    return endpoint


async def update_endpoint(endpoint_id: str, principal: Principal, *, url: str | None = None,
                          events: list[str] | None = None, enabled: bool | None = None, deps: Deps) -> Endpoint:
    """Change an endpoint's URL, events or enabled state; enabling clears a disable and its failure streak."""
    values: dict[str, object] = {}
    if url is not None:
        values["url"] = await check_url(url, deps=deps)
    if events is not None:
        values["events"] = events_of(events)
    if enabled is True:
        values.update(disabled_at_ms=None, disabled_reason=None, failing_since_ms=None)
    elif enabled is False:
        values.update(disabled_at_ms=now_ms(), disabled_reason="disabled by its owner")
    async with deps.db.writing() as uow:
        store = WebhooksStore(uow)
        endpoint = await _owned(store, endpoint_id, principal)
        if values:
            endpoint = await store.update_endpoint(endpoint.id, **values)
        await uow.commit()
    return endpoint


async def delete_endpoint(endpoint_id: str, principal: Principal, *, deps: Deps) -> str:
    """Delete an endpoint; its waiting deliveries end FAILED (the log keeps them)."""
    async with deps.db.writing() as uow:
        store = WebhooksStore(uow)
        endpoint = await _owned(store, endpoint_id, principal)
        await store.delete_endpoint(endpoint.id, now_ms())
        await uow.commit()
    return endpoint.public_id


async def rotate_secret(endpoint_id: str, principal: Principal, *, deps: Deps) -> Endpoint:
    """A new secret for the endpoint; the old one keeps signing beside it for 24 hours."""
    async with deps.db.writing() as uow:
        store = WebhooksStore(uow)
        endpoint = await _owned(store, endpoint_id, principal)
        now = now_ms()
        endpoint = await store.update_endpoint(endpoint.id, secret=new_secret(), previous_secret=endpoint.secret,
                                               previous_secret_until_ms=now + ROTATION_OVERLAP_MS)
        await uow.commit()
    return endpoint


async def list_deliveries(principal: Principal, page: Page, *, endpoint_id: str | None = None,
                          status: str | None = None, deps: Deps) -> tuple[list[Delivery], int]:
    """The caller's deliveries, newest first, optionally of one endpoint and in one status."""
    wanted: DeliveryStatus | None = None
    if status is not None:
        try:
            wanted = DeliveryStatus(status)
        except ValueError:
            raise BadUserInput(f"status: one of {', '.join(DeliveryStatus)}", field="status") from None
    async with deps.db.reading() as uow:
        store = WebhooksStore(uow)
        internal = None if endpoint_id is None else (await _owned(store, endpoint_id, principal)).id
        return await store.deliveries_of(principal.user_id, endpoint_id=internal, status=wanted,
                                         offset=page.offset, limit=page.page_size)


async def redeliver(delivery_id: str, principal: Principal, *, deps: Deps) -> Delivery:
    """Send a delivery again now, with the same ``webhook-id`` (a new attempt)."""
    async with deps.db.writing() as uow:
        store = WebhooksStore(uow)
        delivery = await store.delivery_owned(delivery_id, principal.user_id) if isinstance(delivery_id, str) \
            else None
        if delivery is None:
            raise NotFound("webhook delivery")
        if delivery.to_endpoint and delivery.endpoint_id is None:
            raise Conflict("its webhook endpoint was deleted")
        await store.redeliver(delivery.id, now_ms())
        fresh = await store.delivery_owned(delivery_id, principal.user_id)
        await uow.commit()
    assert fresh is not None
    return fresh
