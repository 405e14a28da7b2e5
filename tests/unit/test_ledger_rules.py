from __future__ import annotations

import pytest

from kensa_gql.domain import ledger
from kensa_gql.domain.errors import InsufficientCredits
from kensa_gql.domain.ledger import Allocation, Package


def pkg(id: int, amount: int, expires: int | None = None, remaining: int | None = None) -> Package:
    rem = amount if remaining is None else remaining
    return Package(id=id, amount=amount, remaining=rem, frozen=amount - rem, used=0, expired=0,
                   expires_at_ms=expires)


def test_freeze_takes_from_the_package_that_expires_soonest_first() -> None:
    packages = [pkg(1, 5, expires=None), pkg(2, 3, expires=2_000), pkg(3, 4, expires=1_500)]
    assert ledger.allocate(packages, 6, now_ms=1_000) == [Allocation(3, 4), Allocation(2, 2)]


def test_packages_without_expiry_are_used_last_and_oldest_first() -> None:
    packages = [pkg(7, 5), pkg(4, 5)]
    assert ledger.allocate(packages, 7, now_ms=0) == [Allocation(4, 5), Allocation(7, 2)]


def test_expired_packages_are_never_allocated() -> None:
    packages = [pkg(1, 10, expires=500), pkg(2, 3)]
    with pytest.raises(InsufficientCredits) as info:
        ledger.allocate(packages, 4, now_ms=1_000)
    assert info.value.available == 3 and info.value.required == 4


def test_balance_counts_lapsed_remaining_credits_as_expired() -> None:
    packages = [pkg(1, 10, expires=500, remaining=6), pkg(2, 3)]
    balance = ledger.balance_of(packages, now_ms=1_000)
    assert balance == ledger.Balance(available=3, frozen=4, used=0, expired=6, total=13)
    assert balance.total == balance.available + balance.frozen + balance.used + balance.expired


def test_release_into_an_expired_package_expires_the_credits_at_once() -> None:
    frozen = ledger.freeze(pkg(1, 10, expires=5_000), 4)
    back, lapsed = ledger.release(frozen, 4, now_ms=6_000)
    assert lapsed == 4
    assert (back.remaining, back.frozen, back.expired) == (6, 0, 4)
    back.check()


def test_release_into_a_live_package_makes_the_credits_available_again() -> None:
    frozen = ledger.freeze(pkg(1, 10, expires=5_000), 4)
    back, lapsed = ledger.release(frozen, 4, now_ms=1_000)
    assert lapsed == 0 and back.remaining == 10 and back.frozen == 0


def test_settle_moves_frozen_credits_to_used() -> None:
    settled = ledger.settle(ledger.freeze(pkg(1, 10), 4), 4)
    assert (settled.remaining, settled.frozen, settled.used) == (6, 0, 4)


@pytest.mark.parametrize("amount", [0, -1, True])
def test_grants_must_be_positive_integers(amount: int) -> None:
    with pytest.raises(Exception, match="positive integer"):
        ledger.validate_grant(amount)


def test_check_refuses_a_package_whose_buckets_do_not_add_up() -> None:
    with pytest.raises(AssertionError):
        Package(id=1, amount=10, remaining=5, frozen=6, used=0, expired=0, expires_at_ms=None).check()
