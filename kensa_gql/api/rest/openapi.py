"""The OpenAPI 3.1 document of the /api/v1 mount, served at ``GET /api/v1/openapi.json``.

It describes the legacy API exactly as served: every route of ``routes.py`` (a test keeps the two
in step), the envelopes and every status code an endpoint answers. The request body of
``POST /video/generate`` is built from the catalogue, one alternative per enabled model with its
own durations, aspect ratios and qualities, so the document never offers what the API refuses.
"""

from __future__ import annotations

import functools
from typing import Any

from kensa_gql.api.error_status import HTTP_STATUS
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.ledger import EntryType
from kensa_gql.domain.paging import MAX_PAGE_SIZE
from kensa_gql.domain.videos import CancelOutcome, VideoStatus
from kensa_gql.domain.webhooks import ALL_EVENTS, DeliveryStatus

OPENAPI_PATH = "/openapi.json"
# The codes the REST mount can answer with (api/rest/errors.py renders every error through them).
ERROR_CODES = sorted(HTTP_STATUS)
MAX_IDEMPOTENCY_KEY = 255  # services/videos.py
TIMESTAMP_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"

_ERRORS = {
    400: ("BadUserInput", "Invalid parameters or body; the message starts with the field's name."),
    401: ("Unauthenticated", "No valid API key: missing, malformed, unknown or revoked."),
    402: ("InsufficientCredits", "The available balance does not cover the price; nothing was charged."),
    404: ("NotFound", "Unknown, deleted or another user's video (deliberately indistinguishable)."),
    409: ("Conflict", "A request with this Idempotency-Key is still being processed (webhooks: a limit "
                      "or state that does not allow it)."),
    413: ("PayloadTooLarge", "The request body is larger than the limit."),
    422: ("IdempotencyKeyReused", "This Idempotency-Key was already used with a different body."),
    429: ("RateLimited", "The caller's budget for this minute is spent (RateLimit-Policy names it); "
                         "retry after Retry-After seconds."),
    500: ("InternalServerError", "A fault of ours, masked; the log has it under the X-Request-Id."),
    503: ("Unavailable", "The database cannot serve now (locked or unreachable); retry after Retry-After seconds."),
}
# Every answer may carry these (rate limits on: the default); refusals that say when to come back, Retry-After.
_RATE_HEADERS = {"RateLimit-Policy": {"$ref": "#/components/headers/RateLimitPolicy"},
                 "RateLimit": {"$ref": "#/components/headers/RateLimit"}}
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these keys, all present (the legacy API never leaves one out)."""
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return _object({"success": {"const": True}, "data": data})


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                                                    **_RATE_HEADERS},
            "content": _json(_envelope(data))}


def _operation(operation_id: str, summary: str, ok: dict[str, Any], errors: list[int], *, public: bool = False,
               parameters: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    statuses = sorted({*errors, 429, 500, 503} | (set() if public else {401}))
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary,
        "responses": {"200": ok, **{str(s): {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in statuses}},
    }
    operation["security"] = [] if public else [{"bearerAuth": []}]
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _paging() -> list[dict[str, Any]]:
    # An empty value (``?page=``) is the default, as if the parameter were absent (routes.py).
    return [
        {"name": "page", "in": "query", "description": "Page number, from 1; empty: the default.",
         "allowEmptyValue": True, "schema": {"type": "integer", "minimum": 1, "maximum": 10_000_000, "default": 1}},
        {"name": "pageSize", "in": "query", "description": "Items per page; empty: the default.",
         "allowEmptyValue": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20}},
    ]


def _generate_body(catalog: Catalog) -> dict[str, Any]:
    def alternative(spec: ModelSpec) -> dict[str, Any]:
        return {
            "title": spec.id, "type": "object", "required": ["prompt", "model", "duration", "aspectRatio"],
            "properties": {
                "prompt": {"type": "string", "pattern": r"\S", "maxLength": spec.max_prompt_length,
                           "description": "Text description of the video to generate."},
                "model": {"const": spec.id},
                "duration": {"enum": list(spec.durations), "description": "Seconds."},
                "aspectRatio": {"enum": list(spec.aspect_ratios)},
                "quality": {"enum": [*spec.resolutions, None],
                            "description": f"Output resolution; {spec.resolutions[0]} when absent or null."},
                "startImageUrl": _nullable({
                    "type": "string", "format": "uri", "maxLength": 2048,
                    "description": "A public http(s) URL of a reference image, for image-to-video."}),
                "webhookUrl": _nullable({
                    "type": "string", "description": "An https URL to POST this video's signed events to "
                                                     "(docs/webhooks.md)."}),
                "webhookEvents": _nullable({
                    "type": "array", "items": {"enum": [str(e) for e in ALL_EVENTS]},
                    "description": "Which events go to webhookUrl; all when absent, null or empty."}),
            },
        }

    models = [spec for spec in catalog.models if spec.enabled]
    example = {"prompt": "A golden retriever running through a sunlit meadow, cinematic slow motion",
               "model": models[0].id, "duration": models[0].durations[0], "aspectRatio": models[0].aspect_ratios[0]}
    return {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [alternative(spec) for spec in models]}, "example": example}}}


def _schemas() -> dict[str, Any]:
    timestamp = {"type": "string", "pattern": TIMESTAMP_PATTERN, "description": "UTC, milliseconds, Z."}
    url = {"type": "string"}
    return {
        "Error": _object({
            "success": {"const": False},
            "error": _object({"code": {"enum": ERROR_CODES}, "message": {"type": "string", "minLength": 1}}),
        }),
        "Timestamp": timestamp,
        "VideoStatus": {"enum": list(dict.fromkeys(s.legacy for s in VideoStatus))},  # CANCELLED reads FAILED
        "VideoCreated": _object({
            "uuid": {"type": "string", "format": "uuid"},
            "status": {**_ref("VideoStatus"), "description": "PENDING, unless held by `Prefer: wait`."},
            "model": {"type": "string"}, "creditsUsed": {"type": "integer", "minimum": 0},
            "createdAt": _ref("Timestamp")}),
        "VideoSummary": _object({
            "uuid": {"type": "string", "format": "uuid"}, "prompt": {"type": "string"}, "model": {"type": "string"},
            "status": _ref("VideoStatus"), "videoUrl": _nullable(url), "thumbnailUrl": _nullable(url),
            "duration": {"type": "integer"}, "aspectRatio": {"type": "string"},
            "creditsUsed": {"type": "integer", "minimum": 0}, "createdAt": _ref("Timestamp"),
            "completedAt": _nullable(_ref("Timestamp"))}),
        "VideoDetail": _object({
            "uuid": {"type": "string", "format": "uuid"}, "prompt": {"type": "string"}, "model": {"type": "string"},
            "status": _ref("VideoStatus"), "provider": _nullable({"type": "string"}),
            "videoUrl": _nullable(url), "thumbnailUrl": _nullable(url), "startImageUrl": _nullable(url),
            "duration": {"type": "integer"}, "resolution": {"type": "string"}, "aspectRatio": {"type": "string"},
            "fileSize": _nullable({"type": "integer", "minimum": 0}),
            "creditsUsed": {"type": "integer", "minimum": 0},
            "generationTime": _nullable({"type": "integer", "minimum": 0, "description": "Seconds."}),
            "createdAt": _ref("Timestamp"), "completedAt": _nullable(_ref("Timestamp"))}),
        "VideoTask": _object({
            "uuid": {"type": "string", "format": "uuid"}, "status": _ref("VideoStatus"),
            "progress": {"type": "integer", "minimum": 0, "maximum": 100}}),
        "Model": _object({
            "id": {"type": "string"}, "name": {"type": "string"}, "provider": {"type": "string"},
            "modes": {"type": "array", "items": {"enum": ["text-to-video", "image-to-video"]}},
            "maxDuration": {"type": "integer", "minimum": 1},
            "resolutions": {"type": "array", "items": {"type": "string"}},
            "aspectRatios": {"type": "array", "items": {"type": "string"}}, "enabled": {"type": "boolean"}}),
        "CreditEntry": _object({
            "id": {"type": "string"}, "transNo": {"type": "string"},
            "transType": {"enum": [t.value for t in EntryType]},
            "credits": {"type": "integer"}, "balanceAfter": {"type": "integer"},
            "videoUuid": _nullable({"type": "string", "format": "uuid"}), "createdAt": _ref("Timestamp")}),
        "WebhookEvent": {"enum": [str(e) for e in ALL_EVENTS]},
        "WebhookEndpoint": _object({
            "id": {"type": "string"}, "url": {"type": "string"},
            "events": {"type": "array", "items": _ref("WebhookEvent")}, "enabled": {"type": "boolean"},
            "disabledReason": _nullable({"type": "string"}), "failingSince": _nullable(_ref("Timestamp")),
            "previousSecretExpiresAt": _nullable(_ref("Timestamp")), "createdAt": _ref("Timestamp")}),
        "WebhookDelivery": _object({
            "id": {"type": "string", "description": "The webhook-id header: the same on every retry."},
            "endpointId": _nullable({"type": "string"}), "videoUuid": _nullable({"type": "string"}),
            "url": {"type": "string"}, "event": _ref("WebhookEvent"),
            "status": {"enum": [s.value for s in DeliveryStatus]}, "attempts": {"type": "integer", "minimum": 0},
            "lastStatusCode": _nullable({"type": "integer"}), "lastResponse": _nullable({"type": "string"}),
            "lastError": _nullable({"type": "string"}), "nextAttemptAt": _nullable(_ref("Timestamp")),
            "createdAt": _ref("Timestamp"), "deliveredAt": _nullable(_ref("Timestamp")),
            "payload": {"type": "string", "description": "The exact body sent."}}),
    }


def _webhook_paths(uuid_param: dict[str, Any]) -> dict[str, Any]:
    """``/webhooks`` (docs/webhooks.md) and a video's server-sent events: new beside the legacy paths."""
    id_param = {"name": "id", "in": "path", "required": True, "description": "The endpoint's id.",
                "schema": {"type": "string", "pattern": "^[^/\n]+$"}}
    events = _nullable({"type": "array", "items": _ref("WebhookEvent"),
                        "description": "The events to receive; all when absent, null or empty."})
    created = _ok("The endpoint, with its secret (shown here once).",
                  _object({"endpoint": _ref("WebhookEndpoint"), "secret": {"type": "string", "pattern": "^whsec_"}}))

    def body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"required": True, "content": _json({"type": "object", "properties": properties,
                                                    "required": required})}

    delivery_params = [
        {"name": "endpointId", "in": "query", "required": False, "description": "Only this endpoint's.",
         "schema": {"type": "string"}},
        {"name": "status", "in": "query", "required": False, "description": "Only deliveries in this status.",
         "schema": {"enum": [s.value for s in DeliveryStatus]}},
        *_paging()]
    sse = {"description": "The stream: `event: status`, `id:` the video's version, `data:` the task JSON.",
           "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
           "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {
        "/webhooks": {
            "get": _operation("listWebhookEndpoints", "The caller's webhook endpoints.",
                              _ok("The endpoints.", _object({"endpoints": {"type": "array",
                                                                          "items": _ref("WebhookEndpoint")}})), []),
            "post": _operation("createWebhookEndpoint", "Add a webhook endpoint.", created, [400, 409, 413],
                               body=body({"url": {"type": "string"}, "events": events}, ["url"])),
        },
        "/webhooks/{id}": {
            "patch": _operation("updateWebhookEndpoint", "Change an endpoint's URL, events or enabled state.",
                                _ok("The endpoint.", _object({"endpoint": _ref("WebhookEndpoint")})),
                                [400, 404, 413], parameters=[id_param],
                                body=body({"url": _nullable({"type": "string"}), "events": events,
                                           "enabled": _nullable({"type": "boolean"})}, [])),
            "delete": _operation("deleteWebhookEndpoint", "Delete an endpoint; its waiting deliveries end FAILED.",
                                 _ok("Deleted.", _object({"id": {"type": "string"}, "deleted": {"const": True}})),
                                 [404], parameters=[id_param]),
        },
        "/webhooks/{id}/rotate-secret": {"post": _operation(
            "rotateWebhookSecret", "A new secret; the old one also signs for 24 h.", created, [404],
            parameters=[id_param])},
        "/webhooks/deliveries": {"get": _operation(
            "listWebhookDeliveries", "The caller's webhook deliveries, newest first.",
            _ok("A page of deliveries.", _paged("deliveries", "WebhookDelivery")), [400, 404],
            parameters=delivery_params)},
        "/webhooks/deliveries/{id}/redeliver": {"post": _operation(
            "redeliverWebhook", "Send a delivery again now, with the same webhook-id.",
            _ok("The delivery, PENDING.", _object({"delivery": _ref("WebhookDelivery")})), [404, 409],
            parameters=[{**id_param, "description": "The delivery's id."}])},
        "/webhooks/signing-secret": {"get": _operation(
            "getWebhookSigningSecret", "The account's default secret (made on first use); it signs deliveries "
            "to a video's own webhookUrl.", _ok("The secret.", _object({"secret": {"type": "string"}})), [])},
        "/video/{uuid}/events": {"get": _operation(
            "followVideo", "A video's status as server-sent events, until it is final.", sse, [404],
            parameters=[uuid_param])},
    }


def _paged(key: str, item: str) -> dict[str, Any]:
    return _object({key: {"type": "array", "items": _ref(item)}, "total": {"type": "integer", "minimum": 0},
                    "page": {"type": "integer", "minimum": 1},
                    "pageSize": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}})


@functools.lru_cache(maxsize=4)
def openapi_document(catalog: Catalog) -> dict[str, Any]:
    """The document for this catalogue (built once per catalogue: it never changes while serving)."""
    # Any segment but the fixed names (routes.py's convertor) and without a newline: the /api/v1
    # mount's ``.*`` never matches one, so such a path is an unknown path (404 before any key check).
    uuid_param = {"name": "uuid", "in": "path", "required": True, "description": "The video's UUID.",
                  "schema": {"type": "string", "pattern": "^(?!(?:generate|list|task)$)[^/\n]+$"}}
    video = {
        "get": _operation("getVideo", "Details of one of the caller's videos.",
                          _ok("The video.", _ref("VideoDetail")), [404], parameters=[uuid_param]),
        "delete": _operation("deleteVideo", "Soft-delete a video (the record stays for the ledger).",
                             _ok("Deleted.", _object({"uuid": {"type": "string", "format": "uuid"},
                                                      "deleted": {"const": True}})),
                             [404], parameters=[uuid_param]),
    }
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "Retries with the same key and body answer the first video; at most once charged.",
                   "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}}
    cancel_after = {"name": "Cancel-After", "in": "header", "required": False,
                    "description": "A deadline: a video not finished this long after it was accepted is stopped "
                                   "(FAILED, credits released). 5s to 24h, as 30s, 5m or 1h30m.",
                    # No pattern: anything else is a 400 BAD_USER_INPUT, which the document lists.
                    "schema": {"type": "string", "examples": ["30s", "5m", "1h30m"]}}
    prefer = {"name": "Prefer", "in": "header", "required": False,
              "description": "`wait=N` (RFC 7240): hold the answer until the video is COMPLETED or FAILED or N "
                             "seconds pass (N over 60 counts as 60); the answer then carries "
                             "`Preference-Applied: wait=N`. Malformed preferences are ignored.",
              "schema": {"type": "string"}, "example": "wait=60"}
    paths = {
        "/video/{uuid}": video,
        "/video/{uuid}/cancel": {"post": _operation(
            "cancelVideo", "Stop a video and release its credits (it reads FAILED here); idempotent.",
            _ok("What the cancel found.", _object({
                "uuid": {"type": "string", "format": "uuid"},
                "outcome": {"enum": [CancelOutcome.CANCELLED.value, CancelOutcome.ALREADY_FINISHED.value]},
                "status": _ref("VideoStatus")})), [404], parameters=[uuid_param])},
        "/video/generate": {"post": _operation(
            "generateVideo", "Start a video: credits are frozen, the task queued; poll /video/task.",
            _ok("Accepted: PENDING.", _ref("VideoCreated")), [400, 402, 404, 409, 413, 422],
            parameters=[idempotency, cancel_after, prefer], body=_generate_body(catalog))},
        "/video/list": {"get": _operation("listVideos", "The caller's videos, newest first.",
                                          _ok("A page of videos.", _paged("videos", "VideoSummary")), [400],
                                          parameters=_paging())},
        "/video/task": {"get": _operation(
            "getTaskStatus", "Poll a video's generation status.", _ok("The status.", _ref("VideoTask")),
            [400, 404], parameters=[{"name": "uuid", "in": "query", "required": True,
                                     "description": "Video UUID from the generate response.",
                                     "schema": {"type": "string", "minLength": 1}}, prefer])},
        "/config/models": {"get": _operation(
            "listModels", "The models available for generation.",
            _ok("The catalogue.", _object({"models": {"type": "array", "items": _ref("Model")}})), [],
            public=True)},
        "/credit/history": {"get": _operation("creditHistory", "The caller's ledger entries, newest first.",
                                              _ok("A page of entries.", _paged("transactions", "CreditEntry")),
                                              [400], parameters=_paging())},
        OPENAPI_PATH: {"get": {
            "operationId": "openapi", "summary": "This document.", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1.", "headers": _RATE_HEADERS,
                                  "content": _json({"type": "object"})},
                          "429": {"$ref": "#/components/responses/RateLimited"}}}},
        **_webhook_paths(uuid_param),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kensa video generation API", "version": "1",
                 "description": "The legacy-compatible REST mount. Every answer is an envelope: "
                                "{\"success\": true, \"data\": ...} or {\"success\": false, \"error\": "
                                "{\"code\", \"message\"}}. A method a path does not offer is a 405 "
                                "(METHOD_NOT_ALLOWED), an unknown path a 404 (NOT_FOUND), both in the envelope."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key: Authorization: Bearer kg_..."}},
            "headers": {
                "RequestId": {"description": "The request's id, as logged (or the caller's own).",
                              "schema": {"type": "string"}},
                "RateLimitPolicy": {
                    "description": "The budget this request counted against (IETF httpapi ratelimit-headers "
                                   "draft): a policy name (generate, requests, anonymous), q requests per w seconds.",
                    "schema": {"type": "string", "pattern": r'^"\w+";q=\d+;w=\d+$'},
                    "example": '"requests";q=1200;w=60'},
                "RateLimit": {
                    "description": "What is left of that budget: r requests for the next t seconds.",
                    "schema": {"type": "string", "pattern": r'^"\w+";r=\d+;t=\d+$'},
                    "example": '"requests";r=1187;t=42'},
                "RetryAfter": {"description": "Seconds to wait before trying again.",
                               "schema": {"type": "integer", "minimum": 1}},
            },
            "schemas": _schemas(),
            "responses": {name: {"description": description, "content": _json(_ref("Error")),
                                 **({"headers": {**_RETRY_AFTER, **_RATE_HEADERS}} if name == "RateLimited"
                                    else {"headers": _RETRY_AFTER} if name == "Unavailable" else {})}
                          for name, description in _ERRORS.values()},
        },
    }
