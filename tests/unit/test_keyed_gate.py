"""The per-user write gate: one user's writers take turns, other users' do not wait, nothing leaks."""

from __future__ import annotations

import asyncio

import pytest

from kensa_gql.adapters.db.uow import KeyedGate


async def test_one_keys_turns_queue_in_order_and_other_keys_pass() -> None:
    gate = KeyedGate()
    order: list[str] = []
    first = gate.turn(1)
    await first.acquire()

    async def take(key: int, name: str) -> None:
        turn = gate.turn(key)
        await turn.acquire()
        order.append(name)
        turn.release()

    # given user 1's turn is held, when two more of user 1 and one of user 2 arrive
    waiting = [asyncio.create_task(take(1, "1b")), asyncio.create_task(take(1, "1c"))]
    await asyncio.wait_for(take(2, "2a"), 5)
    # then user 2 went through at once, and user 1's wait for the first to finish, in arrival order
    assert order == ["2a"] and not any(t.done() for t in waiting)
    first.release()
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert order == ["2a", "1b", "1c"]
    assert len(gate) == 0  # no lock is kept once nobody holds or waits


async def test_a_wait_given_up_leaves_nothing_behind() -> None:
    gate = KeyedGate()
    held = gate.turn(7)
    await held.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await gate.turn(7).acquire()
    held.release()
    assert len(gate) == 0
    again = gate.turn(7)
    await asyncio.wait_for(again.acquire(), 5)
    again.release()
