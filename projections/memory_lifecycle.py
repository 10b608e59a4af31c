"""A memory's lifecycle inside a read model: one narrow row per event of its stream, folded.

Shared by ``memories`` and ``memory_search``; each keeps a table of its own with these
columns (:func:`lifecycle_ddl`). Disorder and duplicates: a row is keyed by (memory id,
stream version), so a repeat changes nothing, and after every batch the rows present of each
touched memory are folded again in stream order (:func:`fold`, the same rules as
:func:`sagas.memory_extraction.lifecycle.evolve_memory`). Each row keeps the state *after*
its event, so the state memsaga held at a moment is the one of the memory's last row recorded
by then (system time, ``as_of``), read with one index range per user.

``MemoryCreated`` changes no state (status, validity, successor): a late creation at stream
version 1 leaves every other row's state as it was, so creations, the bulk of the events,
skip the fold. Each row also keeps when its state stopped holding in system time (the next
row's ``recorded_at``), so "the state at T" is one range condition, with no sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import payload_of
from sagas.memory_extraction.events import (
    MemoryCreated,
    MemoryInvalidated,
    MemoryReinstated,
    MemoryRetracted,
    MemorySuperseded,
)
from sagas.memory_extraction.lifecycle import MemoryStatus

LIFECYCLE_TYPES = (MemoryCreated, MemorySuperseded, MemoryInvalidated, MemoryReinstated, MemoryRetracted)
"""The payload models of a memory's stream, in the order a memory usually meets them."""


def lifecycle_ddl(table: str) -> str:
    """DDL of a lifecycle table named by the placeholder ``{table}`` (e.g. ``memory_lifecycle``)."""
    return f"""
CREATE TABLE {{{table}}} (
    memory_id             text        NOT NULL,
    version               bigint      NOT NULL,
    user_id               text        NOT NULL,
    event_id              uuid        NOT NULL,
    event_type            text        NOT NULL,
    recorded_at           timestamptz NOT NULL,
    occurred_at           timestamptz NOT NULL,
    valid_to              timestamptz,
    successor_id          text,
    compensates_event_id  text,
    reason                text,
    actor                 text,
    -- the memory's state after this event (the fold of its rows up to this version), which
    -- held in system time from recorded_at until the next row's recorded_at (NULL: still holds)
    status                text        NOT NULL,
    state_valid_to        timestamptz,
    superseded_by         text,
    ended_by_event_id     text,
    recorded_until        timestamptz,
    PRIMARY KEY (memory_id, version)
);
-- Point in time: the rows of a user whose state held at a moment (recorded_at <= T < recorded_until).
CREATE INDEX ON {{{table}}} (user_id, recorded_at)
    INCLUDE (recorded_until, memory_id, status, state_valid_to, superseded_by);
"""


@dataclass(frozen=True)
class Step:
    """One event of a memory's stream, as the lifecycle table keeps it."""

    memory_id: str
    version: int
    user_id: str
    event_id: str
    event_type: str
    valid_to: datetime | None = None
    successor_id: str | None = None
    compensates_event_id: str | None = None
    reason: str | None = None
    actor: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Standing:
    """A memory's state after a step: what :class:`~sagas.memory_extraction.lifecycle.MemoryState`
    holds of status, world-time end and successor."""

    status: MemoryStatus = "current"
    valid_to: datetime | None = None
    superseded_by: str | None = None
    ended_by_event_id: str | None = None
    retracted_at: datetime | None = None
    retraction_reason: str | None = None
    retracted_by: str | None = None


def evolve(state: Standing, step: Step) -> Standing:
    """The state after ``step`` (the rules of ``lifecycle.evolve_memory``, on narrow rows)."""
    if state.status == "retracted":
        return state
    kind = step.event_type
    if kind == MemorySuperseded.event_type:
        return Standing(
            status="superseded",
            valid_to=step.valid_to,
            superseded_by=step.successor_id,
            ended_by_event_id=step.event_id,
        )
    if kind == MemoryInvalidated.event_type:
        return Standing(
            status="invalidated",
            valid_to=step.valid_to,
            superseded_by=state.superseded_by,
            ended_by_event_id=step.event_id,
        )
    if kind == MemoryReinstated.event_type:
        return Standing() if step.compensates_event_id == state.ended_by_event_id else state
    if kind == MemoryRetracted.event_type:
        return Standing(
            status="retracted",
            valid_to=state.valid_to,
            superseded_by=state.superseded_by,
            ended_by_event_id=state.ended_by_event_id,
            retracted_at=step.occurred_at,
            retraction_reason=step.reason,
            retracted_by=step.actor,
        )
    return state  # MemoryCreated


def fold(steps: Iterable[Step]) -> list[Standing]:
    """The state after each step, in the given (stream) order."""
    state = Standing()
    states = []
    for step in steps:
        state = evolve(state, step)
        states.append(state)
    return states


def step_of(event: RecordedEvent) -> Step:
    """The lifecycle row of one memory event. :raises ValueError: not a memory lifecycle event."""
    kind, at = event.event_type, event.occurred_at
    base = {"version": event.version, "event_id": str(event.event_id), "event_type": kind, "occurred_at": at}
    if kind == MemoryCreated.event_type:
        c = payload_of(event, MemoryCreated)
        return Step(memory_id=c.memory_id, user_id=c.user_id, **base)  # type: ignore[arg-type]
    if kind == MemorySuperseded.event_type:
        s = payload_of(event, MemorySuperseded)
        extra: dict[str, object] = {"valid_to": s.valid_to, "successor_id": s.successor_id}
        ids = (s.memory_id, s.user_id)
    elif kind == MemoryInvalidated.event_type:
        i = payload_of(event, MemoryInvalidated)
        extra, ids = {"valid_to": i.valid_to}, (i.memory_id, i.user_id)
    elif kind == MemoryReinstated.event_type:
        r = payload_of(event, MemoryReinstated)
        extra = {"compensates_event_id": r.compensates_event_id, "reason": r.reason}
        ids = (r.memory_id, r.user_id)
    elif kind == MemoryRetracted.event_type:
        x = payload_of(event, MemoryRetracted)
        extra = {"compensates_event_id": x.compensates_event_id, "reason": x.reason, "actor": x.retracted_by}
        ids = (x.memory_id, x.user_id)
    else:
        raise ValueError(f"{kind} is not an event of a memory's lifecycle")
    return Step(memory_id=ids[0], user_id=ids[1], **base, **extra)  # type: ignore[arg-type]


_STEP_COLUMNS = """memory_id, version, user_id, event_id::text AS event_id, event_type, valid_to,
        successor_id, compensates_event_id, reason, actor, occurred_at, recorded_at"""

# One round trip: insert the rows (a repeat inserts nothing), and read every row of the touched
# memories: those there before (the statement's snapshot) and those just inserted.
_INSERT_AND_READ = f"""WITH new AS (
        INSERT INTO {{t}} (memory_id, version, user_id, event_id, event_type, recorded_at, occurred_at,
            valid_to, successor_id, compensates_event_id, reason, actor, status)
        SELECT u.*, 'current' FROM unnest($1::text[], $2::bigint[], $3::text[], $4::uuid[], $5::text[],
            $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
            $12::text[]) AS u
        ON CONFLICT (memory_id, version) DO NOTHING
        RETURNING {_STEP_COLUMNS})
    SELECT {_STEP_COLUMNS} FROM {{t}} WHERE memory_id = ANY($13::text[])
    UNION ALL SELECT * FROM new
    ORDER BY memory_id, version"""


def created_row(
    t: str, *, memory_id: str = "$1", version: str = "$2", user_id: str = "$3", event_id: str = "$4",
    recorded_at: str = "$5", occurred_at: str = "$6",
) -> str:  # fmt: skip
    """The ``INSERT`` of a ``MemoryCreated``'s row at stream version 1 into lifecycle table ``t``
    (parameters named by position, so that a caller can share its own).

    It needs no fold: its state is "current" (the fold of itself) and it changes no later row's
    state; it holds until the next row recorded, if one arrived first.
    """
    return f"""INSERT INTO {t} (memory_id, version, user_id, event_id, event_type, recorded_at,
        occurred_at, status, recorded_until)
    VALUES ({memory_id}, {version}, {user_id}, {event_id}, 'MemoryCreated', {recorded_at}, {occurred_at},
        'current', (SELECT min(l.recorded_at) FROM {t} l
                    WHERE l.memory_id = {memory_id} AND l.version > {version}))
    ON CONFLICT (memory_id, version) DO NOTHING"""


def states_update(t: str, first: int) -> str:
    """An ``UPDATE`` of lifecycle table ``t`` setting each row's state from the arrays
    ``$first``..``$first+6`` of :attr:`Refold.row_states` (for a ``WITH`` of a caller's statement)."""
    p = [f"${first + i}" for i in range(7)]
    return f"""UPDATE {t} AS l SET status = u.status, state_valid_to = u.valid_to,
        superseded_by = u.superseded_by, ended_by_event_id = u.ended_by, recorded_until = u.until
    FROM unnest({p[0]}::text[], {p[1]}::bigint[], {p[2]}::text[], {p[3]}::timestamptz[], {p[4]}::text[],
        {p[5]}::text[], {p[6]}::timestamptz[]) AS u(memory_id, version, status, valid_to, superseded_by,
        ended_by, until)
    WHERE l.memory_id = u.memory_id AND l.version = u.version"""


@dataclass(frozen=True)
class Folded:
    """A memory's state after every row of it present: to write into the read model's main table."""

    memory_id: str
    user_id: str
    version: int
    standing: Standing


@dataclass(frozen=True)
class Refold:
    """What :func:`refold` found: each touched memory's state, and the state after each of its
    rows (seven columns, for :func:`states_update`)."""

    folded: list[Folded]
    row_states: list[list[object]]


async def refold(conn: Connection, table: str, events: Sequence[RecordedEvent]) -> Refold:
    """Insert the events' rows into lifecycle ``table`` and fold again every memory they touch
    (one round trip); the caller writes the result (:func:`states_update` and its main table).

    Rows keep the fold of the rows present, so the state is final once every event of the
    memory has arrived, in whatever order.
    """
    steps = {(s.memory_id, s.version): (s, e) for e in events for s in [step_of(e)]}  # repeats: once
    columns = zip(
        *(
            (s.memory_id, s.version, s.user_id, e.event_id, s.event_type, e.recorded_at, s.occurred_at,
             s.valid_to, s.successor_id, s.compensates_event_id, s.reason, s.actor)
            for s, e in steps.values()
        ),
        strict=True,
    )  # fmt: skip
    touched = sorted({memory_id for memory_id, _ in steps})
    rows = await conn.fetch(_INSERT_AND_READ.format(t=table), *(list(c) for c in columns), touched)
    states: list[tuple[object, ...]] = []
    folded: list[Folded] = []
    for memory_id, group in groupby(rows, key=lambda r: r["memory_id"]):
        records = list(group)
        memory_steps = [Step(**{k: v for k, v in r.items() if k != "recorded_at"}) for r in records]
        after = fold(memory_steps)
        untils = [r["recorded_at"] for r in records[1:]] + [None]
        for step, standing, until in zip(memory_steps, after, untils, strict=True):
            states.append((memory_id, step.version, standing.status, standing.valid_to,
                           standing.superseded_by, standing.ended_by_event_id, until))  # fmt: skip
        folded.append(Folded(memory_id, memory_steps[-1].user_id, memory_steps[-1].version, after[-1]))
    return Refold(folded, [list(c) for c in zip(*states, strict=True)] if states else [[] for _ in range(7)])
