"""Each user's stored count of live videos always equals COUNT(*) of their non-deleted videos:
after generates, deletes, double deletes, failed generates, and all of them running at once
(on PostgreSQL truly concurrently, with the runner's transitions mixed in, and never a deadlock)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.adapters.db.tables import tasks, users, videos
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.catalog import Catalog, ModelSpec
from kensa_gql.domain.errors import InsufficientCredits, NotFound
from kensa_gql.domain.paging import Page
from kensa_gql.domain.videos import Video, VideoStatus
from kensa_gql.services import accounts, ledger
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps
from kensa_gql.services.routing import Router
from kensa_gql.services.videos import delete_video, generate_video, list_videos
from tests.support import MemoryStorage

REQUEST = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


class AnyVideo:
    """A provider that accepts every request; these tests never run the runner."""

    name = "any"
    poll_interval = 1.0

    def supports(self, spec: ModelSpec, duration: int, resolution: str, aspect_ratio: str,
                 with_image: bool) -> bool:
        return True


class NoEvents:
    async def video_changed(self, video: Video) -> None:
        return None

    async def queue_moved(self) -> None:
        return None


async def _no_check(host: str) -> None:
    return None


def price() -> int:
    catalog = Catalog.load()
    req = catalog.validate(REQUEST)
    spec = catalog.get(req.model)
    assert spec is not None
    return spec.price(req.duration, req.resolution)


def make_deps(db: Database) -> Deps:
    return Deps(db=db, catalog=Catalog.load(), publisher=NoEvents(), check_host=_no_check, storage=MemoryStorage(),
                router=Router({"sora-2": ["any"]}, {"any": AnyVideo()}))  # type: ignore[dict-item]


async def counts(db: Database) -> dict[int, tuple[int, int]]:
    """Per user: (the stored count, COUNT(*) of live videos)."""
    live = (select(func.count()).select_from(videos)
            .where(videos.c.user_id == users.c.id, videos.c.deleted_at_ms.is_(None)).scalar_subquery())
    async with db.reading() as uow:
        rows = await uow.conn.execute(select(users.c.id, users.c.live_videos, live))
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def assert_counts_exact(db: Database) -> dict[int, int]:
    found = await counts(db)
    assert all(stored == actual for stored, actual in found.values()), found
    return {user_id: stored for user_id, (stored, _) in found.items()}


async def test_the_count_follows_generates_deletes_and_double_deletes(db: Database) -> None:
    # given two users, one with credits for exactly five videos
    deps = make_deps(db)
    me, _ = await accounts.create_user("me@example.test", credits=5 * price(), db=db)
    them, _ = await accounts.create_user("them@example.test", credits=100 * price(), db=db)
    assert await assert_counts_exact(db) == {me.user_id: 0, them.user_id: 0}

    # when they generate, and I try a sixth I cannot pay for
    mine = [(await generate_video(REQUEST, me, deps=deps)).video for _ in range(5)]
    theirs = [(await generate_video(REQUEST, them, deps=deps)).video for _ in range(3)]
    with pytest.raises(InsufficientCredits):
        await generate_video(REQUEST, me, deps=deps)
    assert await assert_counts_exact(db) == {me.user_id: 5, them.user_id: 3}

    # when I delete two, one of them twice, and try to delete one of theirs
    await delete_video(mine[0].uuid, me, deps=deps)
    await delete_video(mine[1].uuid, me, deps=deps)
    with pytest.raises(NotFound):
        await delete_video(mine[1].uuid, me, deps=deps)
    with pytest.raises(NotFound):
        await delete_video(theirs[0].uuid, me, deps=deps)

    # then only the live ones count, and the list's total says so on both read paths
    assert await assert_counts_exact(db) == {me.user_id: 3, them.user_id: 3}
    page, total = await list_videos(me, Page(page=1, page_size=2), deps=deps)
    assert total == 3 and [v.uuid for v in page] == [mine[4].uuid, mine[3].uuid]
    async with db.reading() as uow:
        assert (await VideosStore(uow).list_owned(me.user_id, offset=0, limit=2))[1] == 3


async def test_a_store_level_double_soft_delete_counts_once(db: Database) -> None:
    me, _ = await accounts.create_user("me@example.test", credits=price(), db=db)
    video = (await generate_video(REQUEST, me, deps=make_deps(db))).video
    async with db.writing() as uow:
        store = VideosStore(uow)
        assert await store.soft_delete(video.id, 1) is True
        assert await store.soft_delete(video.id, 2) is False
        await uow.commit()
    assert await assert_counts_exact(db) == {me.user_id: 0}


async def test_a_rolled_back_write_leaves_the_count_alone(db: Database) -> None:
    me, _ = await accounts.create_user("me@example.test", credits=price(), db=db)
    video = (await generate_video(REQUEST, me, deps=make_deps(db))).video
    async with db.writing() as uow:
        store = VideosStore(uow)
        await store.soft_delete(video.id, 1)
        await store.add(uuid=str(uuid.uuid4()), user_id=me.user_id, prompt="p", model="sora-2", duration=4,
                        resolution="720p", aspect_ratio="16:9", start_image_url=None, credits=1, now_ms=1)
        # no commit
    assert await assert_counts_exact(db) == {me.user_id: 1}


# -- everything at once --------------------------------------------------------------------------

@dataclass
class World:
    deps: Deps
    principals: list[Principal]
    made: list[tuple[Principal, Video]] = field(default_factory=list)


async def _generate(w: World, who: int) -> None:
    principal = w.principals[who % len(w.principals)]
    try:
        w.made.append((principal, (await generate_video(REQUEST, principal, deps=w.deps)).video))
    except InsufficientCredits:
        pass


async def _delete(w: World, which: int) -> None:
    if w.made:
        principal, video = w.made[which % len(w.made)]
        try:
            await delete_video(video.uuid, principal, deps=w.deps)
        except NotFound:
            pass  # deleted before (or by the other half of a concurrent double delete)


async def _fail(w: World, which: int) -> None:
    """The runner's transition: task, video row, then the account (release), in one transaction."""
    if not w.made:
        return
    _, video = w.made[which % len(w.made)]
    async with w.deps.db.writing() as uow:
        # The task row first, as the runner's lease check (update_task) takes it: the same order
        # as a stop (cancel, delete of a running video), so neither can deadlock the other.
        await uow.conn.execute(select(tasks.c.video_id).where(tasks.c.video_id == video.id).with_for_update())
        store = VideosStore(uow)
        current = await store.get_by_id(video.id, for_update=True)
        if current is None or current.status is not VideoStatus.PENDING:
            return
        await store.update_status(current, status=VideoStatus.FAILED.value, error_message="stress")
        await ledger.release(uow, video_id=video.id, video_uuid=video.uuid, now_ms=1)
        await store.finish_task(video.id)
        await uow.commit()


ACTIONS: dict[str, Any] = {"generate": _generate, "delete": _delete, "fail": _fail}


async def _run_batches(url: str, batches: list[list[tuple[str, int]]]) -> None:
    db = Database(create_engine(url))
    try:
        w = World(make_deps(db), [])
        for _ in range(2):
            email = f"{uuid.uuid4().hex}@stress.test"
            w.principals.append((await accounts.create_user(email, credits=12 * price(), db=db))[0])
        for batch in batches:
            # A delete is issued twice in the same batch: the two race, and one of them must lose.
            jobs = [ACTIONS[kind](w, n) for kind, n in batch]
            jobs += [_delete(w, n) for kind, n in batch if kind == "delete"]
            await asyncio.gather(*jobs)
            await assert_counts_exact(db)
        live = {p.user_id: 0 for p in w.principals}
        async with db.reading() as uow:
            for p in w.principals:
                live[p.user_id] = (await VideosStore(uow).list_owned(p.user_id, offset=0, limit=1))[1]
        stored = await counts(db)
        assert all(live[u] == stored[u][1] for u in live)
    finally:
        await db.dispose()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)  # SQLite starts empty; PostgreSQL's template is migrated already (a no-op)
    return database_url


action = st.tuples(st.sampled_from(sorted(ACTIONS)), st.integers(0, 50))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(action, min_size=1, max_size=8), min_size=1, max_size=5))
def test_concurrent_histories_keep_every_count_exact(migrated_url: str, batches: list[list[tuple[str, int]]]
                                                     ) -> None:
    asyncio.run(_run_batches(migrated_url, batches))


def test_a_burst_of_generates_and_racing_deletes_keeps_the_count_exact(migrated_url: str) -> None:
    # Twenty generates at once for two users, then every video deleted twice at once, with
    # runner-style failures interleaved: PostgreSQL runs these on separate connections.
    burst = [("generate", i) for i in range(20)]
    wreck = [("delete", i) for i in range(20)] + [("fail", i) for i in range(0, 20, 3)]
    asyncio.run(_run_batches(migrated_url, [burst, burst[:10] + wreck, wreck]))


def test_the_bench_seed_sets_the_counts_of_the_videos_it_writes_directly(tmp_path: Path) -> None:
    from bench import seed

    seeded = seed.seed(tmp_path, "reads.db", videos=400)
    db = Database(create_engine(seeded.url))

    async def check() -> dict[int, int]:
        try:
            return await assert_counts_exact(db)
        finally:
            await db.dispose()

    found = asyncio.run(check())
    assert found[seeded.user_id] == len(seeded.readable) + 1  # and the PENDING video the fan-out watches
