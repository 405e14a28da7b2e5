from __future__ import annotations

import pytest

from kensa_gql.domain.videos import LedgerEffect, VideoStatus, can_transition, ledger_effect, next_progress

S = VideoStatus


@pytest.mark.parametrize(("current", "target"), [
    (S.PENDING, S.GENERATING), (S.PENDING, S.FAILED), (S.GENERATING, S.GENERATING),
    (S.GENERATING, S.UPLOADING), (S.GENERATING, S.FAILED), (S.UPLOADING, S.COMPLETED), (S.UPLOADING, S.FAILED),
])
def test_allowed_transitions(current: VideoStatus, target: VideoStatus) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [
    (S.PENDING, S.COMPLETED), (S.PENDING, S.UPLOADING), (S.GENERATING, S.COMPLETED), (S.UPLOADING, S.GENERATING),
    (S.COMPLETED, S.FAILED), (S.FAILED, S.COMPLETED), (S.COMPLETED, S.COMPLETED), (S.FAILED, S.PENDING),
])
def test_forbidden_transitions(current: VideoStatus, target: VideoStatus) -> None:
    assert not can_transition(current, target)


def test_terminal_states_carry_the_ledger_effect() -> None:
    assert ledger_effect(S.COMPLETED) is LedgerEffect.SETTLE
    assert ledger_effect(S.FAILED) is LedgerEffect.RELEASE
    assert ledger_effect(S.GENERATING) is LedgerEffect.NONE


def test_progress_never_decreases_and_is_100_only_when_completed() -> None:
    assert next_progress(40, 30, S.GENERATING) == 40
    assert next_progress(40, 250, S.GENERATING) == 99
    assert next_progress(40, -5, S.GENERATING) == 40
    assert next_progress(10, 0, S.COMPLETED) == 100
