from __future__ import annotations

import pytest

from kensa_gql.domain.videos import FailureCode, LedgerEffect, VideoStatus, can_transition, ledger_effect, next_progress

S = VideoStatus


@pytest.mark.parametrize(("current", "target"), [
    (S.PENDING, S.GENERATING), (S.PENDING, S.FAILED), (S.GENERATING, S.GENERATING),
    (S.GENERATING, S.UPLOADING), (S.GENERATING, S.FAILED), (S.UPLOADING, S.COMPLETED), (S.UPLOADING, S.FAILED),
    (S.PENDING, S.CANCELLED), (S.GENERATING, S.CANCELLED), (S.UPLOADING, S.CANCELLED),
])
def test_allowed_transitions(current: VideoStatus, target: VideoStatus) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [
    (S.PENDING, S.COMPLETED), (S.PENDING, S.UPLOADING), (S.GENERATING, S.COMPLETED), (S.UPLOADING, S.GENERATING),
    (S.COMPLETED, S.FAILED), (S.FAILED, S.COMPLETED), (S.COMPLETED, S.COMPLETED), (S.FAILED, S.PENDING),
    (S.COMPLETED, S.CANCELLED), (S.FAILED, S.CANCELLED), (S.CANCELLED, S.CANCELLED), (S.CANCELLED, S.FAILED),
    (S.CANCELLED, S.COMPLETED),
])
def test_forbidden_transitions(current: VideoStatus, target: VideoStatus) -> None:
    assert not can_transition(current, target)


def test_terminal_states_carry_the_ledger_effect() -> None:
    assert ledger_effect(S.COMPLETED) is LedgerEffect.SETTLE
    assert ledger_effect(S.FAILED) is LedgerEffect.RELEASE
    assert ledger_effect(S.CANCELLED) is LedgerEffect.RELEASE
    assert ledger_effect(S.GENERATING) is LedgerEffect.NONE


def test_progress_never_decreases_and_is_100_only_when_completed() -> None:
    assert next_progress(40, 30, S.GENERATING) == 40
    assert next_progress(40, 250, S.GENERATING) == 99
    assert next_progress(40, -5, S.GENERATING) == 40
    assert next_progress(10, 0, S.COMPLETED) == 100


def test_cancelled_is_final_and_reads_failed_on_the_legacy_api() -> None:
    assert S.CANCELLED.is_terminal
    assert S.CANCELLED.legacy == "FAILED"
    assert [s.legacy for s in S if s is not S.CANCELLED] == [s.value for s in S if s is not S.CANCELLED]


def test_only_content_policy_and_invalid_input_are_not_retryable() -> None:
    assert {c for c in FailureCode if not c.retryable} == {FailureCode.CONTENT_POLICY, FailureCode.INVALID_INPUT}
