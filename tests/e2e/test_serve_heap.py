"""The server freezes its start-up heap, so full collections do not rescan it under load."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.conftest import free_port

APP = """
import gc, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from kensa_gql.server import run_uvicorn

async def frozen(_request):
    return JSONResponse({"frozen": gc.get_freeze_count()})

run_uvicorn(Starlette(routes=[Route("/frozen", frozen)]), host="127.0.0.1", port=int(sys.argv[1]), ws_max_size=65536)
"""


def test_run_uvicorn_freezes_the_heap_built_before_serving() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", APP, str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                frozen = httpx.get(f"http://127.0.0.1:{port}/frozen", timeout=5).json()["frozen"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert frozen > 10_000  # the libraries and the app, at least
    finally:
        server.terminate()
        server.wait(20)
