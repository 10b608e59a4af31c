"""The gap-safe tail's decision rule, without a database."""

from __future__ import annotations

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
