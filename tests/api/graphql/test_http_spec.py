"""GraphQL over HTTP as the spec has it: every refusal is JSON with a code, the spec's own media type
on request, and the spec's conformance audit (``auditServer`` of the npm package graphql-http)
passes every MUST and SHOULD. Runs in both fast-path settings (see the Makefile)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

NODE_DIR = Path(__file__).parents[2] / "e2e" / "node"
SUBSCRIPTION = 'subscription { videoStatus(uuid: "00000000-0000-0000-0000-000000000000") { uuid } }'


def audit_script() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the GraphQL over HTTP audit"
    if not (NODE_DIR / "node_modules" / "graphql-http" / "package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return NODE_DIR / "audit.mjs"


async def test_the_graphql_over_http_audit_passes_every_must_and_should(live_server: LiveServer) -> None:
    process = await asyncio.create_subprocess_exec(
        "node", str(audit_script()), f"{live_server.url}/graphql",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    assert len(results) >= 60  # the audit's MUST and SHOULD items (61 in graphql-http 1.23)
    failed = [f"{r['status']}: {r['name']}: {r.get('reason')}" for r in results if r["status"] != "ok"]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize(("method", "body", "params", "status", "code"), [
    ("POST", b"{not json", None, 400, "BAD_USER_INPUT"),
    ("POST", b"", None, 400, "BAD_USER_INPUT"),
    ("POST", b'[{"query": "{ models { id } }"}]', None, 400, "BAD_USER_INPUT"),
    ("POST", b'{"variables": {}}', None, 400, "BAD_USER_INPUT"),
    ("POST", b'{"query": 1}', None, 400, "BAD_USER_INPUT"),
    ("POST", b'{"query": "{ models { id } }", "variables": 5}', None, 400, "BAD_USER_INPUT"),
    ("POST", b'{"query": "query A { models { id } }", "operationName": "B"}', None, 400, "BAD_USER_INPUT"),
    ("POST", json.dumps({"query": SUBSCRIPTION}).encode(), None, 400, "BAD_USER_INPUT"),
    ("GET", None, {"query": 'mutation { deleteVideo(uuid: "x") { uuid } }'}, 405, "METHOD_NOT_ALLOWED"),
    ("GET", None, {"query": "{ models { id } }", "variables": "{not json"}, 400, "BAD_USER_INPUT"),
    ("PUT", b"{}", None, 405, "METHOD_NOT_ALLOWED"),
    ("DELETE", None, None, 405, "METHOD_NOT_ALLOWED"),
], ids=["invalid-json", "empty", "batch", "no-query", "query-not-string", "variables-not-object",
        "unknown-operation", "subscription-over-post", "mutation-over-get", "get-bad-variables", "put", "delete"])
async def test_every_refusal_is_a_graphql_error_in_json(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, method: str, body: bytes | None,
        params: dict[str, str] | None, status: int, code: str) -> None:
    r = await client.request(method, "/graphql", content=body, params=params,
                             headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    errors: list[dict[str, Any]] = r.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == [code] and errors[0]["message"]
    if status == 405:
        assert r.headers["allow"] in ("GET, POST", "POST")
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize(("query", "variables", "status", "has_data"), [
    ("{ models { id } }", None, 200, True),
    ("{ models { id ", None, 400, False),  # does not parse
    ("{ nope }", None, 400, False),  # does not validate
    ("query Q($p: Int!) { videos(page: $p) { total } }", {"p": "x"}, 400, False),  # variables do not coerce
    ("{ me { email } }", None, 200, True),  # executed: a field error, data null, still 200
])
async def test_the_graphql_response_media_type_on_request(
        client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None, status: int,
        has_data: bool) -> None:
    accept = "application/graphql-response+json, application/json;q=0.9"
    for _ in range(2):  # the second time, a document the fast path remembers answers the same
        r = await client.post("/graphql", json={"query": query, "variables": variables}, headers={"Accept": accept})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/graphql-response+json; charset=utf-8"
        assert ("data" in r.json()) is has_data
    # Without asking for it, the same requests answer application/json and 200, as before.
    plain = await client.post("/graphql", json={"query": query, "variables": variables})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
