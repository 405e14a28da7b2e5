"""Credit ledger rules, modelled on two-phase transfers (pending -> posted | voided).

Credits arrive as packages with an optional expiry. Each package keeps the four buckets
``remaining + frozen + used + expired == amount``; a user's balance is the sum over packages,
so ``total == available + frozen + used + expired`` holds by construction. A freeze takes from
the packages that expire soonest first. A hold remembers which packages it took from, and is
resolved exactly once: settled (frozen -> used) or released (frozen -> remaining).

A release into a package that expired meanwhile returns the credits to that package and
expires them at once: a failed video leaves the user exactly where they would have been had
they never tried, no better (the credits were due to expire) and no worse.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from kensa_gql.domain.errors import BadUserInput, InsufficientCredits


class PackageType(enum.StrEnum):
    GIFT = "gift"
    PURCHASE = "purchase"
    SUBSCRIPTION = "subscription"


class EntryType(enum.StrEnum):
    """Ledger entry kinds; the value is the public ``transType``."""

    GIFT = "GIFT"
    PURCHASE = "PURCHASE"
    SUBSCRIPTION = "SUBSCRIPTION"
    FREEZE = "VIDEO_CONSUME"   # credits leave the available balance when a video is submitted
    SETTLE = "VIDEO_SETTLE"    # the held credits become used (available unchanged)
    RELEASE = "VIDEO_REFUND"   # a failed video gives its credits back
    EXPIRE = "EXPIRE"


GRANT_ENTRY = {
    PackageType.GIFT: EntryType.GIFT,
    PackageType.PURCHASE: EntryType.PURCHASE,
    PackageType.SUBSCRIPTION: EntryType.SUBSCRIPTION,
}


class HoldStatus(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"


@dataclass(frozen=True, slots=True)
class Package:
    id: int
    amount: int
    remaining: int
    frozen: int
    used: int
    expired: int
    expires_at_ms: int | None

    def is_expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and self.expires_at_ms <= now_ms

    def check(self) -> None:
        parts = (self.remaining, self.frozen, self.used, self.expired)
        if min(parts) < 0 or sum(parts) != self.amount:
            raise AssertionError(f"package {self.id} broke the ledger invariant: {self}")


@dataclass(frozen=True, slots=True)
class Balance:
    available: int
    frozen: int
    used: int
    expired: int
    total: int


@dataclass(frozen=True, slots=True)
class Allocation:
    package_id: int
    amount: int


def balance_of(packages: Iterable[Package], now_ms: int) -> Balance:
    """The balance at ``now``; remaining credits of expired packages count as expired already."""
    available = frozen = used = expired = total = 0
    for p in packages:
        total += p.amount
        frozen += p.frozen
        used += p.used
        expired += p.expired
        if p.is_expired(now_ms):
            expired += p.remaining
        else:
            available += p.remaining
    return Balance(available=available, frozen=frozen, used=used, expired=expired, total=total)


# The most credits any amount or balance may be: both APIs render them as GraphQL Int (32-bit
# signed). Every balance figure is at most the user's total (every credit ever granted), and every
# entry's amount at most a balance figure, so bounding the total at each grant bounds them all.
MAX_CREDITS = 2**31 - 1


def validate_grant(amount: int, *, total: int = 0) -> None:
    """Refuse a grant that is not a positive integer or would take the user's total past MAX_CREDITS."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise BadUserInput("credits must be a positive integer", field="credits")
    if amount > MAX_CREDITS - total:
        room = max(0, MAX_CREDITS - total)
        raise BadUserInput(f"credits: at most {MAX_CREDITS} credits may ever be granted to one user; "
                           f"this user can receive at most {room} more", field="credits")


def expiry_order(p: Package) -> tuple[int, int, int]:
    # Soonest expiry first; packages that never expire last; then oldest first.
    return (0 if p.expires_at_ms is not None else 1, p.expires_at_ms or 0, p.id)


def allocate(packages: Sequence[Package], amount: int, now_ms: int) -> list[Allocation]:
    """Choose which packages a freeze of ``amount`` takes from (FIFO by expiry)."""
    if amount <= 0:
        raise BadUserInput("price must be positive")
    live = sorted((p for p in packages if p.remaining > 0 and not p.is_expired(now_ms)), key=expiry_order)
    available = sum(p.remaining for p in live)
    if available < amount:
        raise InsufficientCredits(required=amount, available=available)
    out: list[Allocation] = []
    need = amount
    for p in live:
        take = min(p.remaining, need)
        out.append(Allocation(p.id, take))
        need -= take
        if need == 0:
            break
    return out


def freeze(package: Package, amount: int) -> Package:
    if amount > package.remaining:
        raise AssertionError("freeze beyond the package's remaining credits")
    return replace(package, remaining=package.remaining - amount, frozen=package.frozen + amount)


def settle(package: Package, amount: int) -> Package:
    if amount > package.frozen:
        raise AssertionError("settle beyond the package's frozen credits")
    return replace(package, frozen=package.frozen - amount, used=package.used + amount)


def release(package: Package, amount: int, now_ms: int) -> tuple[Package, int]:
    """Return held credits; returns the new package and how many expired on the way back."""
    if amount > package.frozen:
        raise AssertionError("release beyond the package's frozen credits")
    back = replace(package, frozen=package.frozen - amount, remaining=package.remaining + amount)
    if back.is_expired(now_ms):
        return replace(back, remaining=back.remaining - amount, expired=back.expired + amount), amount
    return back, 0


def expire(package: Package) -> Package:
    return replace(package, remaining=0, expired=package.expired + package.remaining)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a user's credit history, as both APIs show it."""

    id: int
    trans_no: str
    type: str
    credits: int
    balance_after: int
    video_uuid: str | None
    created_at_ms: int
