"""SQLite's read memo (adapters/db/reads.py ``_Memo``): answers kept until any connection commits.

The memo is compared with the plain raw path, which it must answer exactly as, through random
writes of this process and of another one; and it must really spare the read it exists for.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from kensa_gql.adapters.db import reads as reads_module
from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.reads import Reads
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.videos import VideoStatus
from kensa_gql.services import accounts
from kensa_gql.services.videos import generate_video
from tests.adapters.test_reads import T0, World, add_video, build_world
from tests.services.test_live_video_counts import REQUEST, make_deps


@pytest.fixture
def database_url(tmp_path: object) -> str:
    """SQLite only: the memo is SQLite's (PRAGMA data_version)."""
    return f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


@pytest.fixture
async def world(db: Database) -> World:
    return await build_world(db)


@pytest.fixture(params=["wal-index header", "data_version"])
async def memo(request: pytest.FixtureRequest, db: Database, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reads]:
    """The memo with either clock: the WAL-index header, or PRAGMA data_version where it cannot be read."""
    if request.param == "data_version":
        monkeypatch.setattr(reads_module, "_wal_index", lambda _conn, _path: None)
    reads = Reads(db.engine, db.reading, memo=64)
    reads._connection()
    assert (reads._local.memo.header is not None) is (request.param == "wal-index header")
    yield reads
    await reads.aclose()
    assert reads.fallbacks == 0


def traced(reads: Reads) -> list[str]:
    """Every statement the reads' connection runs from now on."""
    statements: list[str] = []
    reads._connection().set_trace_callback(statements.append)
    return statements


def commit_from_another_process(path: str, sql: str, *args: object) -> None:
    script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2], sys.argv[3:]); c.commit()"
    subprocess.run([sys.executable, "-c", script, path, sql, *map(str, args)], check=True, timeout=60)


async def test_a_repeated_read_is_answered_without_reading_until_another_process_commits(
        world: World, memo: Reads) -> None:
    video = world.mine[0]
    assert await memo.owned_video(video.uuid, world.me) == video
    statements = traced(memo)
    # given nothing committed since, when the same video and page are asked again
    assert await memo.owned_video(video.uuid, world.me) == video
    page = await memo.owned_videos(world.me, offset=0, limit=3)
    again = await memo.owned_videos(world.me, offset=0, limit=3)
    # then only the page's first read touched a table: the rest asked whether anything changed
    assert page == again
    tables = [s for s in statements if not s.startswith("PRAGMA data_version")]
    assert len(tables) == 1 and "FROM videos" in tables[0], statements
    # when another process commits a change to that video
    path = world.db.engine.url.database
    assert path is not None
    commit_from_another_process(path, "UPDATE videos SET prompt = ? WHERE uuid = ?", "changed elsewhere", video.uuid)
    # then the next read sees it
    seen = await memo.owned_video(video.uuid, world.me)
    assert seen is not None and seen.prompt == "changed elsewhere"


async def test_a_callers_page_is_their_own(world: World, memo: Reads) -> None:
    videos, total = await memo.owned_videos(world.me, offset=0, limit=5)
    videos.clear()
    assert len((await memo.owned_videos(world.me, offset=0, limit=5))[0]) == 5 and total == 7


async def test_a_full_memo_starts_again_and_still_answers(db: Database, world: World) -> None:
    small = Reads(db.engine, db.reading, memo=2)
    try:
        for _round in range(3):
            for video in world.mine:
                assert await small.owned_video(video.uuid, world.me) == video
                assert len(small._local.memo.answers) <= 2
    finally:
        await small.aclose()


async def test_the_memo_answers_as_the_plain_path_through_random_writes(db: Database, world: World,
                                                                        memo: Reads) -> None:
    plain = Reads(db.engine, db.reading)
    deps = make_deps(db)
    rng = random.Random(20261203)
    path = db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # another connection, as another process
    payers = [(await accounts.create_user(f"payer{i}@example.test", credits=10_000, db=db))[0] for i in (1, 2)]
    users = [world.me, world.them, *(p.user_id for p in payers)]
    waiting: list[str] = []
    try:
        for step in range(150):
            kind = rng.choice(["add", "delete", "status", "other", "generate", "none", "none"])
            videos = [*world.mine, *world.theirs]  # (and the generated ones are asked for by their uuids)
            if kind == "add":
                owner = rng.choice([world.me, world.them])
                added = await add_video(db, owner, T0 + 200_000 + step)
                (world.mine if owner == world.me else world.theirs).append(added)
            elif kind == "delete":
                victim = rng.choice(videos)
                async with db.writing() as uow:
                    await VideosStore(uow).soft_delete(victim.id, T0 + 300_000 + step)
                    await uow.commit()
            elif kind == "status":
                target = rng.choice(videos)
                async with db.writing() as uow:
                    store = VideosStore(uow)
                    current = await store.get_by_id(target.id)
                    assert current is not None
                    await store.update_status(current, status=VideoStatus.GENERATING.value, progress=step % 100)
                    await uow.commit()
            elif kind == "other":
                other.execute("UPDATE videos SET progress = ? WHERE id = ?", (step % 100, rng.choice(videos).id))
            elif kind == "generate":
                waiting.append((await generate_video(REQUEST, rng.choice(payers), deps=deps)).video.uuid)
            # then every read answers as the plain path does, asked in a random order
            uuids = [v.uuid for v in videos] + waiting
            asks = [("video", rng.choice(uuids), rng.choice(users)) for _ in range(3)]
            asks += [("page", rng.choice(users), rng.randrange(0, 12), rng.randrange(1, 8)) for _ in range(2)]
            asks += [("places", tuple(rng.sample(waiting, min(len(waiting), 3))))]
            for ask in rng.sample(asks, len(asks)) * 2:  # twice: the second from the memo
                if ask[0] == "video":
                    got = [await r.owned_video(ask[1], ask[2]) for r in (memo, plain)]
                elif ask[0] == "page":
                    got = [await r.owned_videos(ask[1], offset=ask[2], limit=ask[3]) for r in (memo, plain)]
                else:
                    got = [await r.queue_positions(list(ask[1])) for r in (memo, plain)]
                assert got[0] == got[1], (step, kind, ask)
    finally:
        other.close()
        await plain.aclose()


def shm_locks(path: str) -> list[str]:
    """The POSIX locks this process holds on the database's -shm file (Linux's /proc/locks)."""
    inode = os.stat(path + "-shm").st_ino
    with open("/proc/locks", encoding="utf-8") as locks:
        return sorted(line.split(maxsplit=1)[1] for line in locks
                      if f":{inode} " in line and f" {os.getpid()} " in line)


async def test_the_memo_leaves_sqlites_locks_on_the_wal_index_alone(world: World, memo: Reads) -> None:
    # given a read through the memo (the WAL index already mapped by SQLite: the fixture read)
    path = world.db.engine.url.database
    assert path is not None
    held = shm_locks(path)
    assert held  # SQLite's own: at least its shared lock that keeps other processes from resetting the index
    assert await memo.owned_video(world.mine[0].uuid, world.me) == world.mine[0]
    # then this process still holds every lock it held (closing any descriptor of the -shm file
    # would have dropped them all: SQLite's protection against another process resetting it)
    assert shm_locks(path) == held
