"""The raw-driver read path answers exactly what the unit-of-work path answers: the owner's
live videos only, never another tenant's, never a soft-deleted one, and always the latest commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from kensa_gql.adapters.db.accounts_store import AccountsStore
from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.reads import Reads
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.videos import Video
from kensa_gql.services import accounts
from kensa_gql.services.deps import Deps
from kensa_gql.services.videos import get_video

T0 = 1_900_000_000_000


async def add_video(db: Database, user_id: int, at: int, *, deleted: bool = False) -> Video:
    async with db.writing() as uow:
        store = VideosStore(uow)
        video = await store.add(uuid=str(uuid.uuid4()), user_id=user_id, prompt=f"video at {at}", model="sora-2",
                                duration=4, resolution="720p", aspect_ratio="16:9", start_image_url=None, credits=1,
                                now_ms=at)
        if deleted:
            await store.soft_delete(video.id, at + 1)
        await uow.commit()
    return video


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.mine: list[Video] = []
        self.deleted: list[Video] = []
        self.theirs: list[Video] = []
        self.me = 0
        self.them = 0


@pytest.fixture
async def world(db: Database) -> World:
    return await build_world(db)


async def build_world(db: Database) -> World:
    """Two users, seven videos each, three of mine soft-deleted."""
    w = World(db)
    w.me = (await accounts.create_user("me@example.test", db=db))[0].user_id
    w.them = (await accounts.create_user("them@example.test", db=db))[0].user_id
    for i in range(7):
        w.mine.append(await add_video(db, w.me, T0 + i * 1000))
        w.theirs.append(await add_video(db, w.them, T0 + i * 1000 + 500))
    for i in range(3):
        w.deleted.append(await add_video(db, w.me, T0 + 10_000 + i, deleted=True))
    return w


@pytest.fixture(params=["raw driver", "raw driver with memo", "unit of work"])
async def reads(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[Reads]:
    raw = request.param != "unit of work"
    # The memo is SQLite's alone (PRAGMA data_version); on PostgreSQL it is the raw driver again.
    r = Reads(db.engine, db.reading, fast=raw, memo=64 if request.param == "raw driver with memo" else 0)
    # The raw path exists for SQLite files (sqlite3) and PostgreSQL (asyncpg's prepared statements).
    assert r.fast is raw
    yield r
    await r.aclose()
    assert r.fallbacks == 0  # every read of the raw path was answered by the raw path


async def test_the_owner_reads_their_video_as_the_store_has_it(world: World, reads: Reads) -> None:
    for video in world.mine:
        assert await reads.owned_video(video.uuid, world.me) == video


async def test_another_tenants_video_is_not_found(world: World, reads: Reads) -> None:
    for video in world.theirs:
        assert await reads.owned_video(video.uuid, world.me) is None
    assert await reads.owned_video(world.mine[0].uuid, world.them) is None


async def test_soft_deleted_and_unknown_videos_are_not_found(world: World, reads: Reads) -> None:
    for video in world.deleted:
        assert await reads.owned_video(video.uuid, world.me) is None
    assert await reads.owned_video(str(uuid.uuid4()), world.me) is None


async def test_pages_hold_only_the_owners_live_videos_newest_first(world: World, reads: Reads) -> None:
    newest_first = list(reversed(world.mine))
    assert await reads.owned_videos(world.me, offset=0, limit=100) == (newest_first, 7)
    assert await reads.owned_videos(world.me, offset=2, limit=3) == (newest_first[2:5], 7)
    assert await reads.owned_videos(world.me, offset=50, limit=3) == ([], 7)
    theirs, total = await reads.owned_videos(world.them, offset=0, limit=100)
    assert (theirs, total) == (list(reversed(world.theirs)), 7)


async def test_both_paths_agree_with_the_store(world: World, reads: Reads) -> None:
    async with world.db.reading() as uow:
        store = VideosStore(uow)
        for video in [*world.mine, *world.theirs, *world.deleted]:
            for user in (world.me, world.them):
                assert await reads.owned_video(video.uuid, user) == await store.get_owned(video.uuid, user)
        for user in (world.me, world.them):
            assert await reads.owned_videos(user, offset=1, limit=4) == await store.list_owned(user, offset=1,
                                                                                               limit=4)


async def test_a_commit_is_visible_to_the_next_read(world: World, reads: Reads) -> None:
    fresh = await add_video(world.db, world.me, T0 + 99_000)
    assert await reads.owned_video(fresh.uuid, world.me) == fresh
    assert (await reads.owned_videos(world.me, offset=0, limit=1)) == ([fresh], 8)
    async with world.db.writing() as uow:
        await VideosStore(uow).soft_delete(fresh.id, T0 + 99_001)
        await uow.commit()
    assert await reads.owned_video(fresh.uuid, world.me) is None
    assert (await reads.owned_videos(world.me, offset=0, limit=100))[1] == 7


async def test_api_keys_read_alike_revoked_or_not(db: Database, reads: Reads) -> None:
    principal, issued = await accounts.create_user("keys@example.test", db=db)
    async with db.reading() as uow:
        expected = await AccountsStore(uow).key_by_prefix(issued.prefix)
    record = await reads.api_key(issued.prefix)
    assert record == expected
    assert record is not None and record.user_id == principal.user_id and not record.revoked
    await accounts.revoke_key(issued.prefix, db=db)
    revoked = await reads.api_key(issued.prefix)
    assert revoked is not None and revoked.revoked
    assert await reads.api_key("kg_unknown00") is None


@pytest.mark.parametrize("form", [str.upper, lambda u: "{" + u + "}", lambda u: u.replace("-", ""),
                                  lambda u: "urn:uuid:" + u])
async def test_every_uuid_spelling_reads_the_same_video(world: World, form: object) -> None:
    # get_video skips parsing the canonical form; the other spellings must still be understood
    video = world.mine[0]
    deps = Deps(db=world.db, catalog=None, router=None, publisher=None, check_host=None,
                storage=None)  # type: ignore[arg-type]
    principal = accounts.Principal(world.me, "me@example.test")
    assert await get_video(form(video.uuid), principal, deps=deps) == video  # type: ignore[operator]
