from __future__ import annotations

import uuid

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.ledger_store import LedgerStore
from kensa_gql.adapters.db.videos_store import VideosStore
from kensa_gql.domain.ledger import PackageType
from kensa_gql.services import accounts, ledger

T0 = 1_900_000_000_000
DAY = 86_400_000


async def test_release_after_the_package_expired_gives_nothing_back_but_loses_nothing(db: Database) -> None:
    principal, _ = await accounts.create_user("expiry@example.test", db=db)
    user = principal.user_id
    async with db.writing() as uow:
        await ledger.grant(uow, user_id=user, amount=10, kind=PackageType.SUBSCRIPTION, expires_at_ms=T0 + DAY,
                           now_ms=T0)
        await ledger.grant(uow, user_id=user, amount=5, kind=PackageType.PURCHASE, expires_at_ms=None, now_ms=T0)
        video = await VideosStore(uow).add(uuid=str(uuid.uuid4()), user_id=user, prompt="p", model="sora-2",
                                           duration=4, resolution="720p", aspect_ratio="16:9",
                                           start_image_url=None, credits=12, now_ms=T0)
        # given 12 frozen: 10 from the expiring package first, then 2 from the permanent one
        await ledger.freeze(uow, user_id=user, video_id=video.id, video_uuid=video.uuid, amount=12, now_ms=T0)
        await uow.commit()
    # when the video fails two days later
    later = T0 + 2 * DAY
    async with db.writing() as uow:
        assert await ledger.release(uow, video_id=video.id, video_uuid=video.uuid, now_ms=later)
        assert not await ledger.release(uow, video_id=video.id, video_uuid=video.uuid, now_ms=later)
        await uow.commit()
    # then the 2 permanent credits come back and the 10 expire, as they would have anyway
    async with db.reading() as uow:
        balance = await LedgerStore(uow).balance(user, later)
        entries, _ = await LedgerStore(uow).history(user, offset=0, limit=10)
    assert (balance.available, balance.frozen, balance.used, balance.expired, balance.total) == (5, 0, 0, 10, 15)
    assert [(e.type, e.credits, e.balance_after) for e in entries] == [
        ("EXPIRE", -10, 5), ("VIDEO_REFUND", 12, 15), ("VIDEO_CONSUME", -12, 3), ("PURCHASE", 5, 15),
        ("SUBSCRIPTION", 10, 10)]


async def test_unspent_credits_expire_on_the_next_ledger_operation(db: Database) -> None:
    principal, _ = await accounts.create_user("lapse@example.test", db=db)
    async with db.writing() as uow:
        await ledger.grant(uow, user_id=principal.user_id, amount=7, kind=PackageType.GIFT,
                           expires_at_ms=T0 + 1000, now_ms=T0)
        await uow.commit()
    async with db.reading() as uow:  # reads already count lapsed credits as expired
        assert (await LedgerStore(uow).balance(principal.user_id, T0 + 2000)).available == 0
    async with db.writing() as uow:
        await ledger.grant(uow, user_id=principal.user_id, amount=3, kind=PackageType.GIFT, expires_at_ms=None,
                           now_ms=T0 + 2000)
        await uow.commit()
    async with db.reading() as uow:
        entries, _ = await LedgerStore(uow).history(principal.user_id, offset=0, limit=10)
    assert [(e.type, e.credits, e.balance_after) for e in entries] == [
        ("GIFT", 3, 3), ("EXPIRE", -7, 0), ("GIFT", 7, 7)]
