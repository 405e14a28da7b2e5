"""The backing services tests run on: a fresh PostgreSQL database per test, and Redis.

PostgreSQL: the migrations are applied ONCE per run to a template database, and each test gets
``CREATE DATABASE … TEMPLATE …`` (tens of milliseconds) under a name unique to this run, dropped
when the test ends. Several runs (engineers, CI) can share one server without seeing each other.

When a service is missing the test skips with the command that starts it; under ``CI=true`` it
fails instead, so a CI run can never pass by silently not testing PostgreSQL or Redis.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio

from kensa_gql.adapters.db.migrate import upgrade

T = TypeVar("T")

POSTGRES_URL = os.environ.get("KENSA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KENSA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
               "--dir /var/lib/redis --logfile /var/log/redis/ci.log")
# Databases this suite creates are named kt_<unix time>_<run>_...; leftovers of runs that died
# more than this long ago are dropped at start-up (a live run never lasts this long).
STALE_AFTER_SECONDS = 6 * 3600
_NAME = re.compile(r"^kt_(\d+)_")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(service: str, detail: str, start: str) -> None:
    """Skip (laptop) or fail (CI) a test whose backing service is missing."""
    message = f"{service} is not reachable ({detail}); start it with: {start}"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when the caller's thread has a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


def asyncpg_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the test server."""
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{database}", parts.query, ""))


class PostgresDatabases:
    """Creates a template with the migrations applied, then one database per test from it."""

    def __init__(self) -> None:
        self.run = f"kt_{int(time.time())}_{os.environ.get('KENSA_TEST_RUN_ID', '')}{secrets.token_hex(3)}"
        self.run = re.sub(r"[^a-z0-9_]", "_", self.run.lower())[:40]
        self.template = f"{self.run}_tpl"
        self._lock = threading.Lock()
        self._ready = False
        self._error: str | None = None
        self._counter = itertools.count(1)

    async def _admin(self, *statements: str) -> list[str]:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            names = [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")]
            for statement in statements:
                await conn.execute(statement)
            return names
        finally:
            await conn.close()

    def _prepare(self) -> None:
        try:
            names = run_sync(self._admin)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            return
        now = time.time()
        stale = [n for n in names if (m := _NAME.match(n)) and now - int(m.group(1)) > STALE_AFTER_SECONDS]
        run_sync(lambda: self._admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in stale),
                                     f'CREATE DATABASE "{self.template}"'))
        upgrade(asyncpg_url(self.template))

    def create(self) -> str:
        """A new, migrated database; returns its SQLAlchemy URL."""
        with self._lock:
            if not self._ready and self._error is None:
                self._prepare()
                self._ready = self._error is None
        if self._error is not None:
            unavailable("PostgreSQL", f"{POSTGRES_URL}: {self._error}", START_POSTGRES)
        name = f"{self.run}_{next(self._counter)}"
        run_sync(lambda: self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return asyncpg_url(name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        # FORCE: a server thread or subprocess that has not quite let go must not leak the database.
        run_sync(lambda: self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        if self._ready:
            run_sync(lambda: self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))


def require_redis(url: str = REDIS_URL) -> str:
    """``url`` if a Redis server answers there; otherwise skip (or fail in CI)."""
    async def ping() -> None:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        run_sync(ping)
    except (OSError, redis.RedisError) as exc:
        unavailable("Redis", f"{url}: {type(exc).__name__}: {exc}", START_REDIS)
    return url


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop, freeze and restart at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "not installed", "apt-get install redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the private redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.kill()
