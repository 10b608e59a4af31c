"""The gap-safe tail's decision rule, without a database."""

from __future__ import annotations

import random

from eventstore.tail import Admission, GapGuard


def test_contiguous_positions_pass() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 2, 3], xmin=10) == Admission(3, None)


def test_a_gap_blocks_until_xmin_passes_its_horizon() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 3, 4], xmin=10) == Admission(1, fence_below=4)
    guard.fence(4, horizon=12)
    # The horizon's transaction, or one older than it, may still run: keep waiting.
    assert guard.admit(1, [3, 4], xmin=12) == Admission(0, None)  # covered: no second horizon
    assert guard.waiting
    # Every transaction that could hold position 2 has ended: it is a hole.
    assert guard.admit(1, [3, 4], xmin=13) == Admission(2, None)
    assert not guard.waiting


def test_an_empty_in_progress_list_does_not_pass_a_gap() -> None:
    """The bug of the first rule: a snapshot listing no running transaction passed every gap."""
    guard = GapGuard()
    assert guard.admit(5, [7, 9], xmin=40) == Admission(0, fence_below=9)
    assert guard.admit(5, [7, 9], xmin=40) == Admission(0, fence_below=9)  # no fence: still none


def test_a_filled_gap_is_emitted_in_order() -> None:
    guard = GapGuard()
    assert guard.admit(0, [2], xmin=10) == Admission(0, fence_below=2)
    guard.fence(2, horizon=11)
    assert guard.admit(0, [1, 2], xmin=10) == Admission(2, None)
    assert not guard.waiting


def test_a_new_gap_beyond_an_old_fence_waits_for_its_own() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 3], xmin=10) == Admission(1, fence_below=3)
    guard.fence(3, horizon=11)
    # Position 2 is settled by the first fence; position 5's gap appeared only now.
    assert guard.admit(1, [3, 4, 6], xmin=12) == Admission(2, fence_below=6)
    guard.fence(6, horizon=20)
    assert guard.admit(4, [6], xmin=20) == Admission(0, None)
    assert guard.admit(4, [6], xmin=21) == Admission(1, None)


def test_fences_do_not_pile_up_while_blocked() -> None:
    guard = GapGuard()
    for horizon in range(100, 200):
        guard.fence(3, horizon)
        assert guard.admit(0, [2, 3], xmin=50).count == 0
    assert len(guard._fences) == 1


def _reference_admit(fences: list[tuple[int, int]], after: int, positions: list[int], xmin: int) -> int:
    """The rule written out plainly (no fast path, no fence pruning): what admit must agree with."""
    expected, admitted = after + 1, 0
    for position in positions:
        settled = any(below > expected and xmin > horizon for below, horizon in fences)
        if position != expected and not settled:
            break
        admitted += 1
        expected = position + 1
    return admitted


def test_admit_agrees_with_the_plain_rule_on_random_histories() -> None:
    rng = random.Random(6)
    for _ in range(2000):
        guard, fences = GapGuard(), []
        after, xid = 0, 100
        for _ in range(rng.randint(1, 6)):
            start = after + 1
            positions = sorted(rng.sample(range(start, start + 12), rng.randint(0, 8)))
            if rng.random() < 0.5 and positions:  # often contiguous: the fast path
                positions = list(range(start, start + len(positions)))
            xid += rng.randint(0, 3)
            expected = _reference_admit(fences, after, positions, xid)
            admission = guard.admit(after, positions, xid)
            assert admission.count == expected
            if admission.fence_below is not None:
                horizon = xid + rng.randint(1, 4)
                guard.fence(admission.fence_below, horizon)
                fences.append((admission.fence_below, horizon))
            if expected:
                after = positions[expected - 1]
