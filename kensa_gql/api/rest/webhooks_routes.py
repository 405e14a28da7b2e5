"""``/api/v1/webhooks``: the account's webhook endpoints and delivery log, for backends without GraphQL.

New endpoints beside the legacy mount, in its envelope: the same services as GraphQL's
``createWebhookEndpoint`` and friends (api/graphql/webhooks.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kensa_gql.api import render
from kensa_gql.api.rest.routes import _deps, _json_object, _page, _principal, ok
from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.webhooks import Delivery, Endpoint
from kensa_gql.services import webhook_endpoints as service


def endpoint_json(e: Endpoint) -> dict[str, Any]:
    return {"id": e.public_id, "url": e.url, "events": [str(v) for v in e.events],
            "enabled": e.disabled_at_ms is None, "disabledReason": e.disabled_reason,
            "failingSince": render.timestamp(e.failing_since_ms),
            "previousSecretExpiresAt": render.timestamp(e.previous_secret_until_ms),
            "createdAt": render.timestamp(e.created_at_ms)}


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {"id": d.event_id, "endpointId": d.endpoint_public_id, "videoUuid": d.video_uuid, "url": d.url,
            "event": d.event_type, "status": d.status.value, "attempts": d.attempts,
            "lastStatusCode": d.last_status_code, "lastResponse": d.last_response, "lastError": d.last_error,
            "nextAttemptAt": render.timestamp(d.next_attempt_at_ms), "createdAt": render.timestamp(d.created_at_ms),
            "deliveredAt": render.timestamp(d.delivered_at_ms), "payload": d.payload}


def _events(body: dict[str, Any]) -> list[str] | None:
    events = body.get("events")
    if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
        raise BadUserInput("events: must be a list of event names", field="events")
    return events


def _url(body: dict[str, Any], *, required: bool) -> str | None:
    url = body.get("url")
    if url is None and not required:
        return None
    if not isinstance(url, str):
        raise BadUserInput("url: is required" if url is None else "url: must be a string", field="url")
    return url


async def list_endpoints(request: Request) -> Response:
    items = await service.list_endpoints(await _principal(request), deps=_deps(request))
    return ok({"endpoints": [endpoint_json(e) for e in items]})


async def create_endpoint(request: Request) -> Response:
    principal = await _principal(request)
    body = await _json_object(request)
    endpoint = await service.create_endpoint(_url(body, required=True) or "", _events(body), principal,
                                             deps=_deps(request))
    return ok({"endpoint": endpoint_json(endpoint), "secret": endpoint.secret})


async def update_endpoint(request: Request) -> Response:
    principal = await _principal(request)
    body = await _json_object(request)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise BadUserInput("enabled: must be true or false", field="enabled")
    endpoint = await service.update_endpoint(request.path_params["id"], principal, url=_url(body, required=False),
                                             events=_events(body), enabled=enabled, deps=_deps(request))
    return ok({"endpoint": endpoint_json(endpoint)})


async def delete_endpoint(request: Request) -> Response:
    deleted = await service.delete_endpoint(request.path_params["id"], await _principal(request),
                                            deps=_deps(request))
    return ok({"id": deleted, "deleted": True})


async def rotate_secret(request: Request) -> Response:
    endpoint = await service.rotate_secret(request.path_params["id"], await _principal(request),
                                           deps=_deps(request))
    return ok({"endpoint": endpoint_json(endpoint), "secret": endpoint.secret})


async def list_deliveries(request: Request) -> Response:
    principal = await _principal(request)
    page = _page(request)
    items, total = await service.list_deliveries(principal, page, endpoint_id=request.query_params.get("endpointId"),
                                                 status=request.query_params.get("status"), deps=_deps(request))
    return ok({"deliveries": [delivery_json(d) for d in items], "total": total, "page": page.page,
               "pageSize": page.page_size})


async def redeliver(request: Request) -> Response:
    delivery = await service.redeliver(request.path_params["id"], await _principal(request), deps=_deps(request))
    return ok({"delivery": delivery_json(delivery)})


async def signing_secret(request: Request) -> Response:
    secret = await service.signing_secret(await _principal(request), deps=_deps(request))
    return ok({"secret": secret})


def routes() -> list[BaseRoute]:
    """Under the ``/api/v1`` mount; the fixed paths first."""
    return [
        Route("/webhooks", list_endpoints, methods=["GET"]),
        Route("/webhooks", create_endpoint, methods=["POST"]),
        Route("/webhooks/deliveries", list_deliveries, methods=["GET"]),
        Route("/webhooks/deliveries/{id}/redeliver", redeliver, methods=["POST"]),
        Route("/webhooks/signing-secret", signing_secret, methods=["GET"]),
        Route("/webhooks/{id}", update_endpoint, methods=["PATCH"]),
        Route("/webhooks/{id}", delete_endpoint, methods=["DELETE"]),
        Route("/webhooks/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    ]
