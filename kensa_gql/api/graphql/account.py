"""The caller: who they are, their credit balance, and its history."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from kensa_gql.api import render
from kensa_gql.api.graphql.arguments import PageArg, PageSizeArg
from kensa_gql.api.graphql.context import Context
from kensa_gql.domain.ledger import Balance, Entry
from kensa_gql.domain.paging import page_of
from kensa_gql.services import accounts
from kensa_gql.services.accounts import Principal


@strawberry.type(description="The caller's credits. `total` also counts expired credits.")
class CreditBalance:
    available: int = strawberry.field(description="Spendable now.")
    frozen: int = strawberry.field(description="Held for videos still being made.")
    used: int = strawberry.field(description="Spent on completed videos.")
    total: int = strawberry.field(description="Every credit ever granted.")

    @classmethod
    def from_domain(cls, b: Balance) -> CreditBalance:
        return cls(available=b.available, frozen=b.frozen, used=b.used, total=b.total)


@strawberry.type(description="The authenticated caller.")
class Viewer:
    id: strawberry.ID = strawberry.field(description="The user's id.")
    email: str = strawberry.field(description="The user's email address.")
    principal: strawberry.Private[Principal]

    @classmethod
    def from_domain(cls, p: Principal) -> Viewer:
        return cls(id=strawberry.ID(str(p.user_id)), email=p.email, principal=p)

    @strawberry.field(description="The caller's balance now.")
    async def credits(self, info: Info[Context, None]) -> CreditBalance:
        return CreditBalance.from_domain(await accounts.get_balance(self.principal, db=info.context.deps.db))


@strawberry.type(description="One entry of the credit ledger.")
class CreditTransaction:
    id: strawberry.ID = strawberry.field(description="The entry's id.")
    trans_no: str = strawberry.field(description="The entry's public reference.")
    trans_type: str = strawberry.field(
        description="GIFT, PURCHASE, SUBSCRIPTION, VIDEO_CONSUME (frozen for a video), VIDEO_SETTLE "
                    "(frozen became used), VIDEO_REFUND (a failed video's credits back) or EXPIRE.")
    credits: int = strawberry.field(description="The change in available credits (negative when spent).")
    balance_after: int = strawberry.field(description="Available credits after this entry.")
    video_uuid: strawberry.ID | None = strawberry.field(description="The video concerned, if any.")
    created_at: str = strawberry.field(description="When (UTC ISO 8601, milliseconds, `Z`).")

    @classmethod
    def from_domain(cls, e: Entry) -> CreditTransaction:
        return cls(id=strawberry.ID(str(e.id)), trans_no=e.trans_no, trans_type=e.type, credits=e.credits,
                   balance_after=e.balance_after,
                   video_uuid=None if e.video_uuid is None else strawberry.ID(e.video_uuid),
                   created_at=render.timestamp(e.created_at_ms) or "")


@strawberry.type(description="One page of the caller's credit ledger, newest first.")
class CreditTransactionPage:
    transactions: list[CreditTransaction] = strawberry.field(description="The entries on this page.")
    total: int = strawberry.field(description="How many entries there are in all.")
    page: int = strawberry.field(description="This page's number, from 1.")
    page_size: int = strawberry.field(description="Entries per page.")


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The caller (the owner of the API key).")
    async def me(self, info: Info[Context, None]) -> Viewer:
        return Viewer.from_domain(await info.context.principal())

    @strawberry.field(description="The caller's credit ledger, newest first.")
    async def credit_history(self, info: Info[Context, None], page: PageArg = 1,
                             page_size: PageSizeArg = 20) -> CreditTransactionPage:
        principal = await info.context.principal()
        paging = page_of(page, page_size)
        entries, total = await accounts.credit_history(principal, paging, db=info.context.deps.db)
        return CreditTransactionPage(transactions=[CreditTransaction.from_domain(e) for e in entries],
                                     total=total, page=paging.page, page_size=paging.page_size)
