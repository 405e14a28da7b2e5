"""Seeding benchmark databases quickly: the schema through the migrations, users and keys through
the account service (so keys, ledger accounts and grants are real), and the bulk of the videos
straight into the database in one transaction (10,000 rows take well under a second).

On PostgreSQL (``--database postgres``) each database is created fresh on the server of
``KENSA_BENCH_POSTGRES_URL`` (default the local one), named ``kensa_bench_<pid>_<name>``, and
dropped when the bench ends.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.clock import now_ms
from kensa_gql.services import accounts

STATUSES = ("COMPLETED",) * 8 + ("FAILED", "GENERATING")
PROMPTS = ("A golden retriever running through a sunlit meadow, slow motion",
           "Waves crashing on black volcanic rocks at dusk, aerial shot",
           "A paper boat drifting down a rain-soaked street, close-up")


@dataclass
class Seeded:
    """What the figures need to know about a seeded database."""

    url: str
    key: str                                  # the bench user's API key
    user_id: int
    keys: list[str] = field(default_factory=list)       # every user's API key, the bench user's first
    readable: list[str] = field(default_factory=list)   # the bench user's live videos
    foreign: list[str] = field(default_factory=list)    # other users' videos (never readable)
    deleted: list[str] = field(default_factory=list)    # the bench user's soft-deleted videos
    watched: str = ""                                    # a PENDING video for the fan-out figure
    total_videos: int = 0


POSTGRES_URL = os.environ.get("KENSA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
COLUMNS = ("uuid", "user_id", "prompt", "model", "status", "progress", "provider", "video_url", "thumbnail_url",
           "start_image_url", "duration", "resolution", "aspect_ratio", "file_size", "credits_used",
           "generation_time", "error_message", "created_at_ms", "started_at_ms", "completed_at_ms", "deleted_at_ms")
# These rows bypass the stores, which keep each user's count of live videos: set it here.
LIVE_COUNTS = ("UPDATE users SET live_videos = (SELECT count(*) FROM videos "
               "WHERE videos.user_id = users.id AND videos.deleted_at_ms IS NULL)")


def database_url(directory: Path, name: str, database: str = "sqlite") -> str:
    if database == "sqlite":
        return f"sqlite+aiosqlite:///{directory / name}"
    return postgres_url(postgres_name(name))


def postgres_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"kensa_bench_{os.getpid()}_{name.split('.')[0]}".lower())


def postgres_url(database: str, driver: str = "postgresql+asyncpg") -> str:
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_postgres(name: str) -> None:
    db = postgres_name(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))


def drop_postgres(url: str) -> None:
    """Drop a database seed() made on the PostgreSQL server (no-op for SQLite)."""
    if url.startswith("postgresql"):
        db = urlsplit(url).path.lstrip("/")
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


async def _insert_postgres(url: str, rows: list[tuple[object, ...]]) -> None:
    conn = await asyncpg.connect(postgres_url(urlsplit(url).path.lstrip("/"), "postgresql"))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("videos", records=rows, columns=COLUMNS)
            await conn.execute(LIVE_COUNTS)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _users(url: str, count: int, credits: int) -> list[tuple[int, str]]:
    db = Database(create_engine(url))
    try:
        made = []
        for i in range(count):
            principal, issued = await accounts.create_user(f"bench{i}@example.test", credits=credits, db=db)
            made.append((principal.user_id, issued.key))
        return made
    finally:
        await db.dispose()


def seed(directory: Path, name: str, *, videos: int, users: int = 5, bench_share: float = 0.2,
         credits: int = 0, seed_value: int = 6, database: str = "sqlite") -> Seeded:
    """A database of ``videos`` videos over ``users`` users; the first user is the bench user and
    owns ``bench_share`` of them, 5 % of each user's soft-deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    url = database_url(directory, name, database)
    if database == "postgres":
        create_postgres(name)
    upgrade(url)
    made = asyncio.run(_users(url, users, credits))
    rnd = random.Random(seed_value)
    bench_id, key = made[0]
    out = Seeded(url=url, key=key, user_id=bench_id, total_videos=videos, keys=[k for _u, k in made])
    now = now_ms()
    rows = []
    for i in range(videos):
        owner = bench_id if i < videos * bench_share else made[1 + i % (len(made) - 1)][0]
        video_uuid = str(uuidlib.UUID(int=rnd.getrandbits(128), version=4))
        status = STATUSES[i % len(STATUSES)]
        created = now - (videos - i) * 1000
        completed = created + 60_000 if status == "COMPLETED" else None
        deleted = created + 120_000 if i % 20 == 7 else None
        done = status == "COMPLETED"
        rows.append((
            video_uuid, owner, PROMPTS[i % len(PROMPTS)], "sora-2", status, 100 if done else (0 if i % 3 else 40),
            "local" if status != "PENDING" else None,
            f"http://127.0.0.1:8000/media/videos/{video_uuid}.mp4" if done else None,
            f"http://127.0.0.1:8000/media/thumbnails/{video_uuid}.jpg" if done else None,
            None, 10, "720p", "16:9", 1_234_567 if done else None, 2, 60 if done else None,
            "the provider refused the prompt" if status == "FAILED" else None,
            created, created, completed, deleted))
        if owner != bench_id:
            out.foreign.append(video_uuid)
        elif deleted is not None:
            out.deleted.append(video_uuid)
        else:
            out.readable.append(video_uuid)
    if videos:
        watched = str(uuidlib.uuid4())
        out.watched = watched
        rows.append((watched, bench_id, PROMPTS[0], "sora-2", "PENDING", 0, None, None, None, None, 10, "720p",
                     "16:9", None, 2, None, None, now, None, None, None))
    if database == "postgres":
        asyncio.run(_insert_postgres(url, rows))
        return out
    conn = sqlite3.connect(url.split("///", 1)[1])
    try:
        with conn:
            conn.executemany(f"INSERT INTO videos ({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})",
                             rows)
            conn.execute(LIVE_COUNTS)
    finally:
        conn.close()
    return out
