"""Gap-safe tailing of the global order, without serialising writers.

Positions come from a sequence when a row is inserted but become visible when its
transaction commits, so under concurrent appenders position 7 can be visible while 6 is
still in flight. A reader that passes 7 and checkpoints it would skip 6 forever (see
https://event-driven.io/en/ordering_in_postgres_outbox/). A table lock fixes this by
serialising writers, at most of their throughput; instead we reason about transaction ids.

The rule
--------
A tail reads the rows after its checkpoint in position order, in one statement, together
with that statement's snapshot ``xmin`` (every transaction id below it has ended). It
emits rows while positions are contiguous. At the first missing position ``g`` below a
visible row ``q`` it stops, unless a *fence* settles ``g``: a fence ``(below, horizon)``
says "every missing position below ``below`` is final once a snapshot's ``xmin`` exceeds
``horizon``". When a poll stops at a gap that no fence covers, the tail takes a fresh
transaction id in a statement of its own (``pg_current_xact_id()``, after the rows were
read) as the horizon, and remembers the fence ``(highest visible position, horizon)``.

Why it is right (a proof sketch)
--------------------------------
Let the rows be read in snapshot ``S``, with ``q`` visible and ``g < q`` missing.

1. ``memsaga.append_events`` / ``append_event`` take their transaction id before any
   position (``PERFORM pg_current_xact_id()`` comes first), and the sequence hands
   positions out in time order (``CACHE 1``). So ``g``'s holder had its id before it took
   ``g``, ``g`` was taken before ``q``, and ``q``'s transaction committed before ``S``.
2. The horizon is assigned after ``S`` was taken, and transaction ids are assigned in
   increasing order, so the horizon is above the id of every transaction that could hold
   ``g`` — running, committed or rolled back.
3. A later snapshot whose ``xmin`` exceeds the horizon has every such transaction ended:
   ``g`` is visible in it (committed) or never will be (rolled back, or a sequence value
   no row kept). Either way passing ``g`` loses nothing. The fence holds for every missing
   position below ``q``, so one fence settles them all.

Hence every committed event is emitted exactly once, in position order, and the
checkpoint stays one number: the last position emitted. A rolled-back or abandoned
position holds the tail only until the transactions that existed when the gap was first
seen have ended (PostgreSQL ends an abandoned session's transaction when it notices the
client is gone).

What the earlier rule got wrong: it took "no transaction id in the snapshot's in-progress
list" to mean "nothing runs". But a snapshot's ``xmax`` is one past the highest
*completed* id and the list holds only running ids below ``xmax``: a transaction whose id
is above every completed one runs without being listed (the PostgreSQL manual says so for
``pg_current_snapshot``), and its positions were passed.

Why not order by ``(transaction id, position)``
------------------------------------------------
Admitting only rows whose transaction id is below ``xmin`` and checkpointing the pair is
right by construction too (Emmett does it). It was not chosen because it gives up what
memsaga's readers rely on: position order (within one stream, the order of versions:
two appenders of a stream may take their transaction ids in the other order than they
take the stream's lock), a checkpoint of one number that the relay, the projections, the
rebuild's switch ("every position at or below the live checkpoint is final") and
``memsaga relay --from-position`` share, and no second index on the log. It also holds
every read back behind the oldest running transaction of the whole server, even when
there is no gap; this rule waits only at a gap.

Costs: a poll without a gap is one round trip, as before. A poll that stops at a new gap
makes one more (the horizon), which assigns one transaction id and writes a commit record.
A gap is passed one poll after the transactions running when it was first seen have
ended, so the tail's latency at a gap is that of the longest of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fence:
    """Every missing position below ``below`` is final once a snapshot's xmin exceeds ``horizon``."""

    below: int
    horizon: int


@dataclass(frozen=True, slots=True)
class Admission:
    """What a tail may emit of one fetched batch."""

    count: int
    """How many of the fetched positions may be emitted, from the first."""
    fence_below: int | None
    """Set when the batch stopped at a gap that no fence covers: take a horizon and call
    :meth:`GapGuard.fence` with this position."""


class GapGuard:
    """Decides how many fetched positions a tail may emit; keeps the fences between polls."""

    def __init__(self) -> None:
        self._fences: list[Fence] = []

    def admit(self, after: int, positions: Sequence[int], xmin: int) -> Admission:
        """What of ``positions`` (ascending, all > ``after``) read in a snapshot with ``xmin`` may go."""
        if not positions:
            return Admission(0, None)
        last = positions[-1]
        if last - after == len(positions):
            # No gap at all (the common case): everything goes, and every fence is passed.
            self._prune(last + 1)
            return Admission(len(positions), None)
        expected = after + 1
        admitted = 0
        for position in positions:
            if position != expected and not self._settled(expected, xmin):
                break
            admitted += 1
            expected = position + 1
        self._prune(expected)
        covered = any(f.below >= last for f in self._fences)
        stopped = admitted < len(positions)
        return Admission(admitted, last if stopped and not covered else None)

    def fence(self, below: int, horizon: int) -> None:
        """Remember that missing positions below ``below`` are final once xmin exceeds ``horizon``.

        ``horizon`` must be a transaction id assigned after the snapshot in which ``below``
        was read (see the module docstring).
        """
        new = Fence(below, horizon)
        # A fence covering at least as many positions with a horizon no higher makes another redundant.
        if any(f.below >= new.below and f.horizon <= new.horizon for f in self._fences):
            return
        self._fences = [f for f in self._fences if not (new.below >= f.below and new.horizon <= f.horizon)]
        self._fences.append(new)

    def _settled(self, gap: int, xmin: int) -> bool:
        return any(f.below > gap and xmin > f.horizon for f in self._fences)

    def _prune(self, expected: int) -> None:
        # A fence whose positions are all emitted or passed has nothing left to settle.
        self._fences = [f for f in self._fences if f.below > expected]

    @property
    def waiting(self) -> bool:
        """Whether a gap is being waited on."""
        return bool(self._fences)
