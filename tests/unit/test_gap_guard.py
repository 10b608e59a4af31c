"""The gap-safe tail's decision rule, without a database."""

from __future__ import annotations

import random

from eventstore.tail import GapGuard, SnapshotInfo


def test_contiguous_positions_pass() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 2, 3], SnapshotInfo(xmin=10, max_running=12)) == 3


def test_a_gap_blocks_while_its_holder_may_still_run() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 3, 4], SnapshotInfo(xmin=10, max_running=12)) == 1
    # Still some transaction from the first snapshot may run: keep waiting.
    assert guard.admit(1, [3, 4], SnapshotInfo(xmin=12, max_running=15)) == 0
    assert guard.waiting
    # Every transaction running at the first sight of the gap has ended: it is a hole.
    assert guard.admit(1, [3, 4], SnapshotInfo(xmin=13, max_running=15)) == 2
    assert not guard.waiting


def test_a_gap_with_nothing_running_is_final_at_once() -> None:
    guard = GapGuard()
    assert guard.admit(5, [7, 9], SnapshotInfo(xmin=40, max_running=None)) == 2


def test_a_filled_gap_is_emitted_in_order() -> None:
    guard = GapGuard()
    assert guard.admit(0, [2], SnapshotInfo(xmin=10, max_running=11)) == 0
    assert guard.admit(0, [1, 2], SnapshotInfo(xmin=12, max_running=None)) == 2


def test_a_new_gap_beyond_an_old_fence_waits_for_its_own() -> None:
    guard = GapGuard()
    assert guard.admit(0, [1, 3], SnapshotInfo(xmin=10, max_running=11)) == 1
    # Position 2 is settled by the first fence; position 5's gap appeared only now.
    assert guard.admit(1, [3, 4, 6], SnapshotInfo(xmin=12, max_running=20)) == 2
    assert guard.admit(4, [6], SnapshotInfo(xmin=21, max_running=22)) == 1


def test_fences_do_not_pile_up_while_blocked() -> None:
    guard = GapGuard()
    for xid in range(100, 200):
        guard.admit(0, [2, 3], SnapshotInfo(xmin=50, max_running=xid))
    assert len(guard._fences) == 1


def _reference_admit(
    fences: list[tuple[int, int]], after: int, positions: list[int], snap: SnapshotInfo
) -> int:
    """The rule written out plainly (no fast path, no fence pruning): what admit must agree with."""
    if positions and snap.max_running is not None:
        fences.append((positions[-1], snap.max_running))
    expected, admitted = after + 1, 0
    for position in positions:
        settled = snap.max_running is None or any(b > expected and snap.xmin > s for b, s in fences)
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
            snap = SnapshotInfo(xmin=xid, max_running=None if rng.random() < 0.2 else xid + rng.randint(0, 4))
            expected = _reference_admit(fences, after, positions, snap)
            assert guard.admit(after, positions, snap) == expected
            if expected:
                after = positions[expected - 1]
