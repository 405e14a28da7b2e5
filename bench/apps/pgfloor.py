"""The PostgreSQL floor: a bare Starlette endpoint doing one asyncpg pool ``fetchrow`` by uuid.

What a read costs on PostgreSQL before any gateway is involved: the driver's own pool with its
defaults (a reset query on every release included), the video's columns as JSON. Every figure
of ``python -m bench --database postgres`` is reported against it as well as against the bare
hello-world. The database comes from ``KENSA_BENCH_FLOOR_DSN`` (a plain ``postgresql://`` DSN).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SQL = ("SELECT id, uuid, user_id, prompt, model, status, progress, provider, video_url, thumbnail_url, "
       "start_image_url, duration, resolution, aspect_ratio, file_size, credits_used, generation_time, "
       "error_message, created_at_ms, completed_at_ms, deleted_at_ms FROM videos WHERE uuid = $1")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["KENSA_BENCH_FLOOR_DSN"])
    try:
        yield
    finally:
        await app.state.pool.close()


async def video(request: Request) -> Response:
    row = await request.app.state.pool.fetchrow(SQL, request.path_params["uuid"])
    if row is None:
        return JSONResponse({"error": "not found"}, 404)
    return JSONResponse(dict(row))


app = Starlette(routes=[Route("/video/{uuid}", video)], lifespan=lifespan)
