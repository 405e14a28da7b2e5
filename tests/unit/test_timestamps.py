"""The wire timestamp: UTC ISO 8601 with milliseconds and Z, whatever the epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kensa_gql.api.render import timestamp


def reference(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_known_moments() -> None:
    assert timestamp(None) is None
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1_773_396_000_007) == "2026-03-13T10:00:00.007Z"
    assert timestamp(951_782_400_999) == "2000-02-29T00:00:00.999Z"


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # to 9999-12-31T23:59:59.999Z
def test_matches_the_datetime_rendering(ms: int) -> None:
    assert timestamp(ms) == reference(ms)
