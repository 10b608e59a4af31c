"""Gap-safe tailing of the global order, without serialising writers.

Positions come from a sequence when a row is inserted but become visible when its
transaction commits, so under concurrent appenders position 7 can be visible while 6 is
still in flight. A reader that passes 7 and checkpoints it would skip 6 forever (see
https://event-driven.io/en/ordering_in_postgres_outbox/). A table lock fixes this by
serialising writers, at most of their throughput; instead we reason about transaction ids:

* ``memsaga.append_events`` takes its transaction id before any position, and the sequence
  hands positions out in time order (CACHE 1). So if position ``q`` is visible in snapshot
  ``S`` and ``p < q`` is not, ``p``'s transaction had its id before ``S`` was taken: it was
  running in ``S`` (its id is among ``S``'s in-progress ids) or it rolled back.
* Hence, once a later snapshot's ``xmin`` is above the largest id running in ``S``, every
  such ``p`` is final: visible now, or rolled back and a hole forever.

The reader emits positions in order and stops at the first gap it cannot prove final; it
remembers ``(q, max running id of S)`` fences to settle that gap on a later poll. Rolled-back
gaps settle as soon as the transactions running at the time end, so the tail never stalls
behind them, and the checkpoint stays one number: the last position emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """The parts of a PostgreSQL snapshot the tail needs."""

    xmin: int
    max_running: int | None  # the largest in-progress transaction id, None when none runs


@dataclass(frozen=True, slots=True)
class _Fence:
    below: int  # every position below this one ...
    settled_after: int  # ... is final once a snapshot's xmin exceeds this transaction id


class GapGuard:
    """Decides how many fetched positions a tail may emit; keeps fences between polls."""

    def __init__(self) -> None:
        self._fences: list[_Fence] = []

    def admit(self, after: int, positions: Sequence[int], snapshot: SnapshotInfo) -> int:
        """How many of ``positions`` (ascending, all > ``after``, read in ``snapshot``) may be emitted."""
        if positions and positions[-1] - after == len(positions):
            # No gap at all (the common case): everything goes, and every fence is passed.
            self._fences = [f for f in self._fences if f.below > positions[-1] + 1]
            return len(positions)
        if positions and snapshot.max_running is not None:
            self._add(_Fence(positions[-1], snapshot.max_running))
        expected = after + 1
        admitted = 0
        for position in positions:
            if position != expected and not self._settled(expected, snapshot):
                break
            admitted += 1
            expected = position + 1
        self._fences = [f for f in self._fences if f.below > expected]
        return admitted

    def _settled(self, gap: int, snapshot: SnapshotInfo) -> bool:
        if snapshot.max_running is None:
            return True  # nothing runs: a missing position below a visible one rolled back
        return any(f.below > gap and snapshot.xmin > f.settled_after for f in self._fences)

    def _add(self, fence: _Fence) -> None:
        # A fence covering at least as many positions with a bound no higher makes another redundant.
        if any(f.below >= fence.below and f.settled_after <= fence.settled_after for f in self._fences):
            return
        self._fences = [
            f for f in self._fences if not (fence.below >= f.below and fence.settled_after <= f.settled_after)
        ]
        self._fences.append(fence)

    @property
    def waiting(self) -> bool:
        """Whether a gap is being waited on."""
        return bool(self._fences)
