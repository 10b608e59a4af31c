"""The gap-safe tail against a model of PostgreSQL's snapshots, over random interleavings.

The model keeps what the tail's rule depends on, as PostgreSQL does it:

* transaction ids are assigned in increasing order; an append takes its id before any
  position (``memsaga.append_events``), a position comes from a sequence in time order;
* a snapshot's ``xmax`` is one past the highest *completed* id, its in-progress list holds
  the running ids below ``xmax`` only, and its ``xmin`` is the lowest running id (or
  ``xmax`` when none runs below it);
* a row is visible once its transaction has committed.

``ModelTail`` does what ``EventTail.fetch`` does, one step at a time, so that other
transactions can begin, take positions and end between the tail's read and its horizon.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.tail import GapGuard


@dataclass
class Snapshot:
    xmin: int
    xmax: int
    xip: list[int]


@dataclass
class Postgres:
    """Transaction ids, a sequence and visibility: just enough of PostgreSQL for the tail."""

    next_xid: int = 100
    latest_completed: int = 99
    sequence: int = 0
    running: dict[int, list[int]] = field(default_factory=dict)  # xid -> positions it took
    committed: set[int] = field(default_factory=set)

    def begin(self) -> int:
        """A transaction takes its id (``PERFORM pg_current_xact_id()``)."""
        xid = self.next_xid
        self.next_xid += 1
        self.running[xid] = []
        return xid

    def take_position(self, xid: int) -> None:
        self.sequence += 1
        self.running[xid].append(self.sequence)

    def end(self, xid: int, *, commit: bool) -> None:
        positions = self.running.pop(xid)
        if commit:
            self.committed.update(positions)
        self.latest_completed = max(self.latest_completed, xid)

    def snapshot(self) -> Snapshot:
        xmax = self.latest_completed + 1
        return Snapshot(
            xmin=min([xmax, *self.running]),
            xmax=xmax,
            xip=sorted(x for x in self.running if x < xmax),
        )

    def read(self, after: int, limit: int) -> tuple[list[int], Snapshot]:
        """One statement: the visible positions after ``after`` and its snapshot."""
        return sorted(p for p in self.committed if p > after)[:limit], self.snapshot()

    def horizon(self) -> int:
        """``SELECT pg_current_xact_id()`` in a statement of its own: assigned, then completed."""
        xid = self.begin()
        self.end(xid, commit=True)
        return xid


@dataclass
class ModelTail:
    """``EventTail.fetch`` in two steps: the read, then (when asked for) the horizon."""

    db: Postgres
    guard: GapGuard = field(default_factory=GapGuard)
    position: int = 0
    delivered: list[int] = field(default_factory=list)
    pending_fence: int | None = None
    saw_unlisted_runner: bool = False  # a running transaction missing from a snapshot's list

    def read(self, limit: int) -> None:
        if self.pending_fence is not None:
            return  # the real tail awaits its horizon before it can read again
        positions, snap = self.db.read(self.position, limit)
        self.saw_unlisted_runner |= any(x not in snap.xip for x in self.db.running)
        admission = self.guard.admit(self.position, positions, snap.xmin)
        emitted = positions[: admission.count]
        assert all(p in self.db.committed for p in emitted)
        self.delivered.extend(emitted)
        if emitted:
            self.position = emitted[-1]
        self.pending_fence = admission.fence_below

    def take_horizon(self) -> None:
        if self.pending_fence is not None:
            self.guard.fence(self.pending_fence, self.db.horizon())
            self.pending_fence = None


Step = tuple[str, int]
STEPS = st.lists(
    st.tuples(st.sampled_from(["begin", "take", "commit", "rollback", "read", "horizon"]), st.integers(0, 3)),
    max_size=80,
)


def run(steps: list[Step], *, final_commit: bool = True) -> ModelTail:
    db = Postgres()
    tail = ModelTail(db)
    for op, n in steps:
        xids = sorted(db.running)
        if op == "begin":
            db.begin()
        elif op in ("take", "commit", "rollback") and xids:
            xid = xids[n % len(xids)]
            if op == "take":
                db.take_position(xid)
            else:
                db.end(xid, commit=op == "commit")
        elif op == "read":
            tail.read(limit=n + 1)
        elif op == "horizon":
            tail.take_horizon()
    for xid in sorted(db.running):
        db.end(xid, commit=final_commit)
    # Everything has ended: two polls (and a horizon) reach the head, whatever the history.
    for _ in range(3):
        tail.take_horizon()
        tail.read(limit=10_000)
    return tail


@settings(max_examples=2000, deadline=None)
@given(STEPS, st.booleans())
def test_the_tail_delivers_exactly_the_committed_events_in_order(steps: list[Step], commit: bool) -> None:
    """Exactly once, in position order; and once all has ended, it waits on nothing."""
    tail = run(steps, final_commit=commit)
    assert tail.delivered == sorted(tail.db.committed)
    assert not tail.guard.waiting


def test_the_model_has_the_ordering_that_lost_events() -> None:
    """Part 1 of the repro in the model: P's id is above every completed one, so no list has it."""
    db = Postgres()
    tail = ModelTail(db)
    h = db.begin()
    db.take_position(h)  # position 1
    q = db.begin()  # Q takes its id, then waits for the stream's lock held by H
    p = db.begin()  # P: a later id
    db.take_position(p)  # position 2, left in flight
    db.end(h, commit=True)
    db.take_position(q)  # position 3
    db.end(q, commit=True)
    snap = db.snapshot()
    assert p in db.running and p not in snap.xip and snap.xmin == snap.xmax == p
    tail.read(limit=10)
    tail.take_horizon()
    assert tail.delivered == [1]
    tail.read(limit=10)
    assert tail.delivered == [1]  # P still runs
    db.end(p, commit=True)
    tail.read(limit=10)
    assert tail.delivered == [1, 2, 3]


class FirstRule:
    """The rule this one replaced (an empty in-progress list meant "nothing runs"), for the test below."""

    def __init__(self, db: Postgres) -> None:
        self.db, self.position, self.delivered = db, 0, list[int]()
        self.fences: list[tuple[int, int]] = []

    def read(self, limit: int) -> None:
        positions, snap = self.db.read(self.position, limit)
        max_running = max(snap.xip, default=None)
        if positions and max_running is not None:
            self.fences.append((positions[-1], max_running))
        expected = self.position + 1
        for p in positions:
            settled = max_running is None or any(b > expected and snap.xmin > x for b, x in self.fences)
            if p != expected and not settled:
                break
            self.delivered.append(p)
            self.position, expected = p, p + 1


def test_the_model_catches_the_rule_that_lost_events() -> None:
    """A model too kind to show the first rule's loss could not vouch for the new one."""
    rng = random.Random(11)
    losses = 0
    for _ in range(300):
        db = Postgres()
        first, tail = FirstRule(db), ModelTail(db)
        for _ in range(60):
            op, xids = rng.choice(["begin", "take", "take", "commit", "rollback", "read"]), sorted(db.running)
            if op == "begin":
                db.begin()
            elif op == "read":
                first.read(limit=8)
                tail.read(limit=8)
                tail.take_horizon()
            elif xids:
                xid = rng.choice(xids)
                if op == "take":
                    db.take_position(xid)
                else:
                    db.end(xid, commit=op == "commit")
        for xid in sorted(db.running):
            db.end(xid, commit=True)
        for _ in range(3):
            first.read(limit=10_000)
            tail.read(limit=10_000)
            tail.take_horizon()
        assert tail.delivered == sorted(db.committed)
        losses += first.delivered != sorted(db.committed)
    assert losses > 0
