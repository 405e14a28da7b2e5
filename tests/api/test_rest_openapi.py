"""The OpenAPI document of /api/v1: valid OpenAPI 3.1, served, and in step with the routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from kensa_gql.api.error_status import HTTP_STATUS
from kensa_gql.api.rest import routes as rest
from kensa_gql.api.rest import webhooks_routes
from kensa_gql.api.rest.openapi import openapi_document
from kensa_gql.app import create_app
from kensa_gql.domain.catalog import Catalog
from kensa_gql.settings import Settings

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item
            if method in METHODS}


def routed(tmp_path: Path) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves under /api/v1, read off its router."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/k.db", media_dir=tmp_path / "media"))
    mounts = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"]
    assert len(mounts) == 1
    pairs = set()
    for route in mounts[0].routes:
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {uuid:video_id} -> {uuid}
        # Starlette answers HEAD on every GET route by itself; the document lists what a client uses.
        pairs |= {(path, method) for method in route.methods or () if method != "HEAD"}
    return pairs


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document(Catalog.load())
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_every_documented_operation_is_routed(tmp_path: Path) -> None:
    document = openapi_document(Catalog.load())
    assert documented(document) == routed(tmp_path)
    assert len(documented(document)) == len(rest.routes()) + len(webhooks_routes.routes()) + 1  # + SSE
    assert document["servers"] == [{"url": "/api/v1"}]


def test_every_error_code_and_status_is_the_one_the_rest_mount_renders() -> None:
    document = openapi_document(Catalog.load())
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(codes) == set(HTTP_STATUS)
    for item in document["paths"].values():
        for operation in item.values():
            for status in operation["responses"]:
                assert status == "200" or int(status) in HTTP_STATUS.values(), status


def test_the_generate_body_admits_exactly_the_catalogue() -> None:
    catalog = Catalog.load()
    body = openapi_document(catalog)["paths"]["/video/generate"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    ok = {"prompt": "a lighthouse", "model": "sora-2", "duration": 10, "aspectRatio": "16:9"}
    for request in [ok, {**ok, "quality": "1080p"}, {**ok, "quality": None}, {**ok, "duration": 10.0},
                    {**ok, "startImageUrl": "https://example.com/a.png"}, {**ok, "extra": 1}]:
        jsonschema.validate(request, schema)
        catalog.validate(request)
    for bad in [{**ok, "model": "sora-9"}, {**ok, "duration": 7}, {**ok, "aspectRatio": "21:9"},
                {**ok, "quality": "4k"}, {**ok, "prompt": "  "}, {**ok, "prompt": "x" * 5001},
                {k: v for k, v in ok.items() if k != "duration"}]:
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad), bad


async def test_the_document_is_served_without_a_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == openapi_document(Catalog.load())


async def test_real_answers_validate_against_the_document(client: httpx.AsyncClient, make_user: Any) -> None:
    document = openapi_document(Catalog.load())
    user = await make_user(credits=3)  # one video at 2 credits, then a 402 for one at 3
    r = await client.post("/api/v1/video/generate", headers=user.headers,
                          json={"prompt": "a lighthouse", "model": "sora-2", "duration": 10, "aspectRatio": "16:9"})
    uuid = r.json()["data"]["uuid"]
    answers = [
        ("/video/generate", "post", r),
        ("/video/{uuid}", "get", await client.get(f"/api/v1/video/{uuid}", headers=user.headers)),
        ("/video/list", "get", await client.get("/api/v1/video/list", headers=user.headers)),
        ("/video/task", "get", await client.get(f"/api/v1/video/task?uuid={uuid}", headers=user.headers)),
        ("/config/models", "get", await client.get("/api/v1/config/models")),
        ("/credit/history", "get", await client.get("/api/v1/credit/history", headers=user.headers)),
        ("/video/list", "get", await client.get("/api/v1/video/list?page=0", headers=user.headers)),
        ("/video/task", "get", await client.get("/api/v1/video/task", headers=user.headers)),
        ("/video/{uuid}", "get", await client.get("/api/v1/video/nope")),
        ("/video/generate", "post", await client.post("/api/v1/video/generate", headers=user.headers,
                                                      json={"prompt": "x", "model": "sora-2", "duration": 10,
                                                            "aspectRatio": "16:9", "quality": "1080p"})),
        ("/video/{uuid}", "delete", await client.delete(f"/api/v1/video/{uuid}", headers=user.headers)),
        ("/video/{uuid}", "delete", await client.delete(f"/api/v1/video/{uuid}", headers=user.headers)),
    ]
    seen = set()
    for path, method, response in answers:
        responses = document["paths"][path][method]["responses"]
        assert str(response.status_code) in responses, (path, method, response.status_code)
        seen.add(response.status_code)
        schema = resolve(document, responses[str(response.status_code)])["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})
    assert seen == {200, 400, 401, 402, 404}


def resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in item:
        return item
    node: Any = document
    for part in item["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node
