"""A missing PostgreSQL or Redis skips a test on a laptop, and fails it in CI."""

from __future__ import annotations

import pytest

from tests.backends import require_redis, unavailable


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_service_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str,
                                                           outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="start it with: redis-server"):
        unavailable("Redis", "connection refused", "redis-server --port 6379")


def test_an_unreachable_redis_is_reported_with_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"redis://127\.0\.0\.1:1/0"):
        require_redis("redis://127.0.0.1:1/0")
