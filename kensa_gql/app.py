"""The composition root: ``create_app(settings)`` builds everything; nothing happens at import."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from kensa_gql import tracing
from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.adapters.db.videos_store import videos_by_uuid, waiting_places
from kensa_gql.adapters.netguard import check_public_host
from kensa_gql.adapters.providers.registry import (
    build_providers,
    callback_urls,
    check_route_names,
    check_routes,
    configured_names,
)
from kensa_gql.adapters.pubsub import VideoEvents
from kensa_gql.adapters.storage import storage_from_url
from kensa_gql.adapters.storage.local import LocalStorage, writable_directory
from kensa_gql.adapters.webhook_sender import WebhookSender, WebhookUrlGuard
from kensa_gql.api import console, render
from kensa_gql.api.frontdoor import FrontDoor
from kensa_gql.api.graphql.view import graphql_app
from kensa_gql.api.metrics import HttpInstruments, metrics_endpoint
from kensa_gql.api.middleware import RequestContext
from kensa_gql.api.ratelimits import RateLimiter, Throttle
from kensa_gql.api.rest import docs as rest_docs
from kensa_gql.api.rest import routes as rest
from kensa_gql.api.rest import webhooks_routes as rest_webhooks
from kensa_gql.api.rest.errors import on_http_error, on_kensa_error
from kensa_gql.api.rest.video_events import VideoEventStream
from kensa_gql.api.webhooks import routes as webhook_routes
from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.errors import KensaError, StorageUnavailable, Unavailable
from kensa_gql.domain.videos import MEDIA_FOLDERS
from kensa_gql.domain.webhooks import RetryPolicy
from kensa_gql.runner import Runner, RunnerConfig
from kensa_gql.services.accounts import Authenticator
from kensa_gql.services.deadlines import sweep_deadlines
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from kensa_gql.services.sessions import Sessions
from kensa_gql.settings import Settings, SettingsError
from kensa_gql.webhook_worker import WebhookWorker, WebhookWorkerConfig

log = logging.getLogger(__name__)

READY_LOCK_WAIT_SECONDS = 1.0  # how long /readyz waits for the database's write lock


class MediaFiles(StaticFiles):
    """Finished media: a folder not made yet, or not usable (a file in its place), is a 404 for
    every path under it, never the 500 of StaticFiles' one-off configuration check."""

    async def check_config(self) -> None:
        return None


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    deps: Deps = request.app.state.deps
    try:
        # Ready means able to take a generate request: the database must take writes, not only reads.
        await deps.db.check_writable(lock_wait=min(deps.db.lock_timeout, READY_LOCK_WAIT_SECONDS))
    except Unavailable as exc:
        log.warning("readiness check: %s", exc.message)
        return JSONResponse({"status": "unavailable", "database": exc.message}, status_code=503)
    except Exception:
        log.exception("readiness check: database unreachable")
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    report = {"status": "ok", "database": "ok"}
    if request.app.state.runner is not None:  # only the runner writes media (an API-only process never does)
        try:
            await request.app.state.storage.check_writable()
        except StorageUnavailable as exc:
            log.warning("readiness check: %s", exc.message)
            return JSONResponse({"status": "unavailable", "database": "ok", "storage": exc.message},
                                status_code=503)
        report["storage"] = "ok"
    # Events are reported, not required: without them REST and queries still work, and watchers
    # catch up from the database once the channel is back.
    report["events"] = "ok" if request.app.state.events.healthy else "reconnecting"
    return JSONResponse(report)


def create_app(settings: Settings, *, run_worker: bool = True, migrate: bool | None = None) -> Starlette:
    """Build the gateway. ``migrate`` defaults to True on SQLite (PostgreSQL: ``db upgrade``)."""
    catalog = Catalog.load()
    try:
        tracing.setup(settings.otel)
    except tracing.TracingUnavailable as exc:
        raise SettingsError(f"KENSA_OTEL / OTEL_EXPORTER_OTLP_ENDPOINT: {exc}") from None
    # Before anything starts: a route to a vendor without its key is a configuration error.
    check_route_names(settings.routes, configured_names(settings), catalog)
    media_dir = settings.media_dir.resolve()
    work_dir = media_dir / ".work"
    # Every process writes here (the runner its work files, the API deletes): stop now if it cannot.
    writable_directory(media_dir, "KENSA_MEDIA_DIR")
    # Built here, not in the lifespan, so a bad KENSA_STORAGE_URL stops `serve` with a clean message.
    storage = storage_from_url(settings.storage_url, media_dir=media_dir, public_url=settings.public_url,
                               s3_public_url=settings.s3_public_url,
                               s3_url_expiry_seconds=settings.s3_url_expiry_seconds,
                               s3_addressing_style=settings.s3_addressing_style)
    media_root = storage.root if isinstance(storage, LocalStorage) else media_dir

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate if migrate is not None else settings.is_sqlite:
            await asyncio.to_thread(upgrade, settings.database_url)
        if run_worker:  # only the runner writes to storage; an API-only process needs no bucket access
            await storage.check()
        engine = create_engine(settings.database_url, lock_timeout=settings.db_lock_timeout_seconds)
        db = Database(engine, lock_timeout=settings.db_lock_timeout_seconds, fast_reads=settings.db_fast_reads,
                      combined_writes=settings.db_combined_writes,
                      read_memo=settings.db_read_memo_size if settings.db_read_memo else 0)
        events = VideoEvents(settings.broadcast_url, reread=functools.partial(videos_by_uuid, db.reading),
                             places=functools.partial(waiting_places, db.reading))
        pool = CpuPool(workers=1)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0),
                                 limits=httpx.Limits(max_connections=100))
        providers = build_providers(settings, http=http, pool=pool, work_dir=work_dir)
        check_routes(settings.routes, providers, catalog)
        router = Router(settings.routes, providers)
        runner: Runner | None = None
        guard = WebhookUrlGuard(allow_http=settings.webhooks_allow_http,
                                allow_private=settings.webhooks_allow_private)
        deps = Deps(db=db, catalog=catalog, router=router, publisher=events, check_host=check_public_host,
                    storage=storage, watchers=events.watchers, webhook_urls=guard, video_json=render.video_event,
                    sse_keepalive_seconds=settings.sse_keepalive_seconds)
        webhooks: WebhookWorker | None = None
        if run_worker:
            runner = Runner(deps, storage=storage, pool=pool, http=http, config=runner_config(settings))
            deps = dataclasses.replace(deps, wake_runner=runner.wake)
            webhooks = WebhookWorker(db, WebhookSender(guard, timeout=settings.webhook_timeout_seconds),
                                     webhook_config(settings))
        app.state.deps = deps
        app.state.events = events
        app.state.runner = runner
        app.state.webhooks = webhooks
        app.state.authenticator = Authenticator(db, ttl=settings.auth_cache_seconds)
        # Open sockets learn of a revoked key about as soon as HTTP does (services/sessions.py).
        app.state.sessions = sessions = Sessions(db, interval=max(settings.auth_cache_seconds, 1.0))
        for spec in catalog.models:
            log.info("model %s routes to %s", spec.id, " -> ".join(router.route_of(spec.id)))
        if all(set(router.route_of(s.id)) == {"local"} for s in catalog.models):
            log.info("no vendor is configured: every model renders locally with the embedded 'local' provider")
        await events.start()
        runner_task = asyncio.create_task(runner.run(), name="runner") if runner else None
        webhooks_task = asyncio.create_task(webhooks.run(), name="webhooks") if webhooks else None
        sessions_task = asyncio.create_task(sessions.run(), name="sessions")
        # Every process sweeps: a deadline holds with no runner, or a busy one (services/deadlines.py).
        deadlines_task = asyncio.create_task(
            sweep_deadlines(deps=deps, interval=settings.deadline_sweep_seconds), name="deadlines")
        try:
            yield
        finally:
            for task in (sessions_task, deadlines_task, webhooks_task):
                if task is None:
                    continue
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if runner_task is not None:
                runner_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner_task
            await events.stop()
            for provider in providers.values():  # renders in progress end before their pool does
                close = getattr(provider, "close", None)
                if close is not None:
                    await close()
            await http.aclose()
            pool.shutdown()
            await db.dispose()

    gql = graphql_app(settings)
    # Route + WebSocketRoute, not Mount: a Mount redirects POST /graphql and drops WebSockets.
    graphql_route = Route("/graphql", gql)
    # Starlette tries routes in order: the busiest first (the paths do not overlap).
    routes: list[BaseRoute] = [
        graphql_route,
        *rest_docs.routes(),  # before the mount, which would take /api/v1/docs for itself
        Mount("/api/v1", routes=[*rest.routes(), *rest_webhooks.routes(),
                                 Route("/video/{uuid:video_id}/events", VideoEventStream(), methods=["GET"])]),
        WebSocketRoute("/graphql", gql),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *([Route("/metrics", metrics_endpoint)] if settings.metrics else []),
        Mount("/webhooks", routes=webhook_routes()),
        # Only finished media is public: work in progress under media/.work never is.
        *[Mount(f"/media/{folder}", app=MediaFiles(directory=media_root / folder, check_dir=False))
          for folder in MEDIA_FOLDERS],
        *console.routes(console=settings.console, graphiql=settings.graphiql),
    ]
    # Outermost: request ids, the access log, the 500 fallback and the HTTP metrics, for every response;
    # without CORS also the preflight answer and the rate limits (one layer for all of them).
    cors = bool(settings.cors_origins)
    middleware = [Middleware(RequestContext, instruments=HttpInstruments() if settings.metrics else None,
                             gate=not cors)]
    if tracing.enabled:  # outermost of all: the request's span is current for everything below it
        middleware.insert(0, Middleware(tracing.asgi_middleware))
    if cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                                     allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
                                     allow_headers=["authorization", "content-type", "idempotency-key", "cancel-after",
                                                    "prefer", "x-request-id"]))
        # Inside CORS, so a 429 carries its headers too; before the front door, so every route pays it.
        middleware.append(Middleware(Throttle))
    handlers: dict[Any, Any] = {KensaError: on_kensa_error, HTTPException: on_http_error}
    # Innermost, inside the request context and CORS: the hottest routes skip Starlette's
    # exception layer and router, and nothing else changes (api/frontdoor.py). GraphQL POSTs
    # take that way only with the fast path on: off, /graphql is Strawberry's, reached as usual.
    middleware.append(Middleware(FrontDoor, graphql=graphql_route if settings.graphql_fastpath else None))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=handlers)
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings) if settings.rate_limits else None
    app.state.storage = storage
    app.state.callbacks = callback_urls(settings)
    return app


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(lease_seconds=settings.lease_seconds, claim_interval=settings.claim_interval_seconds,
                        claim_batch=settings.claim_batch, max_running=settings.max_running_tasks,
                        task_timeout_seconds=settings.task_timeout_seconds,
                        max_video_bytes=settings.max_video_bytes,
                        work_dir=settings.media_dir.resolve() / ".work",
                        store_attempts=settings.store_attempts,
                        store_backoff_seconds=settings.store_backoff_seconds,
                        max_per_user=settings.max_active_videos_per_user)



def webhook_config(settings: Settings) -> WebhookWorkerConfig:
    policy = RetryPolicy(first_delay_ms=int(settings.webhook_first_retry_seconds * 1000),
                         window_ms=int(settings.webhook_retry_window_seconds * 1000))
    return WebhookWorkerConfig(policy=policy, claim_interval=settings.claim_interval_seconds,
                               claim_batch=settings.claim_batch, timeout=settings.webhook_timeout_seconds,
                               lease_seconds=settings.lease_seconds,
                               retention_ms=settings.webhook_retention_days * 86_400_000)
