"""The fast read path's queue places (adapters/db/reads.py) answer as the store's own ranking does."""

from __future__ import annotations

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.services import accounts
from kensa_gql.services.videos import generate_video
from tests.services.test_live_video_counts import REQUEST, make_deps


async def test_fast_queue_places_match_the_stores_ranking(db: Database) -> None:
    # given two users' waiting videos, interleaved in the claim order (each user's first goes first)
    deps = make_deps(db)
    a = (await accounts.create_user("a@example.test", credits=100, db=db))[0]
    b = (await accounts.create_user("b@example.test", credits=100, db=db))[0]
    made = [(await generate_video(REQUEST, who, deps=deps)).video.uuid for who in (a, a, a, b)]
    asked = [*made, "00000000-0000-4000-8000-000000000000"]  # and one that is not waiting
    # when both paths are asked
    fast = await db.reads.queue_positions(asked)
    async with db.reading() as uow:
        stored = await VideosStore(uow).queue_positions(asked)
    # then they agree, and b's first video goes before a's second
    assert db.reads.fallbacks == 0
    assert fast == stored == {made[0]: 1, made[3]: 2, made[1]: 3, made[2]: 4}
