"""The baseline: a bare Starlette JSON hello-world, and a bare WebSocket fan-out.

This is the Python floor every figure is divided by: the same uvicorn settings as the gateway and
nothing else. The WebSocket endpoint speaks just enough graphql-transport-ws for the fan-out
client (ack, subscribe, an initial ``next``) and serialises each event ONCE for all sockets: what
a WebSocket fan-out costs in Python before any GraphQL is involved.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_queues: set[asyncio.Queue[str]] = set()


async def hello(_request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def subscribe(ws: WebSocket) -> None:
    await ws.accept(subprotocol="graphql-transport-ws")
    queue: asyncio.Queue[str] = asyncio.Queue()
    try:
        init = json.loads(await ws.receive_text())
        if init.get("type") != "connection_init":
            await ws.close(4400)
            return
        await ws.send_text('{"type":"connection_ack"}')
        message = json.loads(await ws.receive_text())
        op_id = json.dumps(message["id"])
        variables = message.get("payload", {}).get("variables", {})
        snapshot = {"uuid": variables.get("uuid"), "status": "PENDING", "progress": 0}
        _queues.add(queue)
        await ws.send_text(json.dumps({"id": message["id"], "type": "next",
                                       "payload": {"data": {"videoStatus": snapshot}}}))
        while True:
            payload = await queue.get()
            await ws.send_text(f'{{"id":{op_id},"type":"next","payload":{payload}}}')
    except WebSocketDisconnect:
        pass
    finally:
        _queues.discard(queue)


async def publish(request: Request) -> Response:
    """One status change to every subscriber; answers the time it was published."""
    progress = int(request.query_params.get("progress", "1"))
    uuid = request.query_params.get("uuid", "")
    published = time.time()
    payload = json.dumps({"data": {"videoStatus": {"uuid": uuid, "status": "GENERATING", "progress": progress}}},
                         separators=(",", ":"))
    for queue in _queues:
        queue.put_nowait(payload)
    return JSONResponse({"published": published, "subscribers": len(_queues)})


async def stats(_request: Request) -> Response:
    return JSONResponse({"subscribers": len(_queues)})


app = Starlette(routes=[
    Route("/", hello),
    Route("/_bench/publish", publish, methods=["POST"]),
    Route("/_bench/stats", stats),
    WebSocketRoute("/graphql", subscribe),
])
