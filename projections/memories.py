"""The ``memories`` read model: each user's memories and their lifecycle, in world and system time.

Two tables per version:

- ``memories``: one row per memory id: what its ``MemoryCreated`` says (text, kind, slot,
  value, polarity, provenance, ``valid_from``: the stated date, else the event's
  ``occurred_at``) and its state now (status current / superseded / invalidated /
  retracted, ``valid_to``, ``superseded_by``). A retracted memory keeps only a tombstone
  (its text is cleared) and no query returns it.
- ``memory_lifecycle``: one narrow row per event of a memory's stream, with the state after
  it (:mod:`projections.memory_lifecycle`): system-time queries (``as_of``) read the last row
  of each memory recorded by then.

Disorder and duplicates: creation fields are set by ``MemoryCreated`` whenever it arrives
(never the state); the state is the fold of the lifecycle rows present, in stream order,
recomputed for every memory a batch touches, so any delivery order ends with
:func:`sagas.memory_extraction.lifecycle.memory_state` of the stream. Handlers read only the
event and these tables (no clock): ``created_at`` is the creation's ``occurred_at``,
``recorded_at`` its ``recorded_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import asyncpg
from pydantic import BaseModel, ConfigDict, TypeAdapter

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import Projection, Tables, payload_of
from projections.errors import ProjectionNotInitialized, ProjectionsError
from projections.memory_lifecycle import LIFECYCLE_TYPES, created_row, lifecycle_ddl, refold, states_update
from projections.row_security import as_user
from projections.sealed import forgetting_handler
from sagas.forgetting import UserForgotten
from sagas.memory_extraction.events import MemoryCreated, Polarity
from sagas.memory_extraction.lifecycle import STATUSES, MemoryStatus

DDL = """
CREATE TABLE {memories} (
    memory_id          text        PRIMARY KEY,
    user_id            text        NOT NULL,
    text               text,
    kind               text,
    content_hash       text,
    episode_id         text,
    source             text,
    sensitive          boolean,
    vector_sha256      text,
    slot               text,
    value              text,
    polarity           text,
    version            bigint      NOT NULL,
    correlation_id     text,
    created_event_id   uuid,
    created_at         timestamptz,
    recorded_at        timestamptz,
    valid_from         timestamptz,
    valid_to           timestamptz,
    status             text        NOT NULL DEFAULT 'current',
    superseded_by      text,
    ended_by_event_id  text,
    retracted_at       timestamptz,
    retraction_reason  text,
    retracted_by       text
);
CREATE INDEX ON {memories} (user_id, status, created_at);
CREATE INDEX ON {memories} (superseded_by) WHERE superseded_by IS NOT NULL;
""" + lifecycle_ddl("memory_lifecycle")

_CREATED = """INSERT INTO {memories} AS m (memory_id, user_id, text, kind, content_hash, episode_id,
        source, sensitive, vector_sha256, slot, value, polarity, version, correlation_id,
        created_event_id, created_at, recorded_at, valid_from)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
    ON CONFLICT (memory_id) DO UPDATE SET
        user_id = EXCLUDED.user_id,
        text = CASE WHEN m.status = 'retracted' THEN NULL ELSE EXCLUDED.text END,
        kind = EXCLUDED.kind, content_hash = EXCLUDED.content_hash, episode_id = EXCLUDED.episode_id,
        source = EXCLUDED.source, sensitive = EXCLUDED.sensitive,
        vector_sha256 = EXCLUDED.vector_sha256, slot = EXCLUDED.slot, value = EXCLUDED.value,
        polarity = EXCLUDED.polarity, correlation_id = EXCLUDED.correlation_id,
        created_event_id = EXCLUDED.created_event_id, created_at = EXCLUDED.created_at,
        recorded_at = EXCLUDED.recorded_at, valid_from = EXCLUDED.valid_from,
        version = greatest(m.version, EXCLUDED.version)"""

# A creation and its lifecycle row, in one statement (creations are most events).
_CREATED_AND_ROW = (
    "WITH created AS ("
    + _CREATED
    + ") "
    + created_row(
        "{memory_lifecycle}", memory_id="$1", version="$13", user_id="$2", event_id="$15",
        recorded_at="$17", occurred_at="$16",
    )
)  # fmt: skip

# The fold of every lifecycle row present is the best knowledge there is: it overwrites; the
# lifecycle rows get the state after each of them in the same statement.
_STATE = """WITH states AS ({states})
    INSERT INTO {memories} AS m (memory_id, user_id, version, status, valid_to, superseded_by,
        ended_by_event_id, retracted_at, retraction_reason, retracted_by)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[],
        $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[])
    ON CONFLICT (memory_id) DO UPDATE SET
        version = greatest(m.version, EXCLUDED.version), status = EXCLUDED.status,
        valid_to = EXCLUDED.valid_to, superseded_by = EXCLUDED.superseded_by,
        ended_by_event_id = EXCLUDED.ended_by_event_id, retracted_at = EXCLUDED.retracted_at,
        retraction_reason = EXCLUDED.retraction_reason, retracted_by = EXCLUDED.retracted_by,
        text = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.text END"""


def _created_args(event: RecordedEvent) -> tuple[object, ...]:
    p = payload_of(event, MemoryCreated)
    return (
        p.memory_id,
        p.user_id,
        p.text,
        p.kind,
        p.content_hash,
        p.episode_id,
        p.source,
        p.sensitive,
        p.vector_sha256,
        p.slot,
        p.value,
        p.polarity,
        event.version,
        event.correlation_id,
        event.event_id,
        event.occurred_at,
        event.recorded_at,
        p.valid_from or event.occurred_at,
    )


async def _refold(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Add the events' lifecycle rows, fold each touched memory again and write its state and the
    state after each of its rows: two round trips."""
    found = await refold(conn, tables["memory_lifecycle"], events)
    if not found.folded:
        return
    columns = zip(
        *(
            (f.memory_id, f.user_id, f.version, s.status, s.valid_to, s.superseded_by, s.ended_by_event_id,
             s.retracted_at, s.retraction_reason, s.retracted_by)
            for f in found.folded
            for s in [f.standing]
        ),
        strict=True,
    )  # fmt: skip
    sql = _STATE.format(memories=tables["memories"], states=states_update(tables["memory_lifecycle"], 11))
    await conn.execute(sql, *(list(c) for c in columns), *found.row_states)


async def on_memories_created(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Fill each memory's creation fields and its lifecycle row: one statement for a run of
    creations at stream version 1 (creations change no state)."""
    await conn.executemany(_CREATED_AND_ROW.format(**tables), [_created_args(e) for e in events])
    if late := [e for e in events if e.version != 1]:  # not written by the saga; folded to be safe
        await _refold(conn, tables, late)


async def on_memory_created(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_memories_created` for one event."""
    await on_memories_created(conn, tables, [event])


async def on_lifecycle_events(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Superseded, invalidated, reinstated or retracted: add the rows, fold each touched memory
    again and write its state (a tombstone row when its creation has not arrived yet)."""
    await _refold(conn, tables, events)


async def on_lifecycle_event(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_lifecycle_events` for one event."""
    await on_lifecycle_events(conn, tables, [event])


_CHANGES = LIFECYCLE_TYPES[1:]  # every lifecycle type but MemoryCreated

MEMORIES = Projection.declare(
    "memories",
    version=3,
    tables=("memories", "memory_lifecycle"),
    ddl=DDL,
    handlers={MemoryCreated: on_memory_created}
    | {t: on_lifecycle_event for t in _CHANGES}
    | {UserForgotten: forgetting_handler("memory_lifecycle", "memories")},
    batch_handlers={MemoryCreated: on_memories_created} | {t: on_lifecycle_events for t in _CHANGES},
    description="each user's memories: status, world-time validity, successors, and every state change",
)


# --- Queries ------------------------------------------------------------------------------------


class InvalidMemoryQuery(ProjectionsError, ValueError):
    """A memories query that cannot be run as asked (bad input); the message says what to change."""


class ReadModelOutdated(ProjectionNotInitialized):
    """The active read model was built by older code that lacks what the query needs: the
    version this code reads is not built yet."""

    def __init__(self, name: str) -> None:
        self.name = name
        ProjectionsError.__init__(
            self,
            f"the active {name!r} read model was built by an older version of its code:"
            f" run `memsaga project rebuild {name}` (blue-green; the old one serves meanwhile)",
        )


class Memory(BaseModel):
    """A user's memory as the read model holds it (at ``as_of``, when a query asked for one).

    ``created_at`` is when the creating episode happened, ``recorded_at`` when memsaga recorded
    the memory (system time); ``valid_from`` / ``valid_to`` are world time (``valid_to`` None:
    still true, as far as memsaga knows).
    """

    model_config = ConfigDict(frozen=True)

    memory_id: str
    user_id: str
    text: str
    kind: str
    status: MemoryStatus = "current"
    slot: str | None = None
    value: str | None = None
    polarity: Polarity = "holds"
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: str | None = None
    version: int
    correlation_id: str
    created_at: datetime
    recorded_at: datetime | None = None
    episode_id: str | None
    source: str | None
    sensitive: bool


_MEMORIES = TypeAdapter(list[Memory])

LISTED_STATUSES: tuple[MemoryStatus, ...] = tuple(s for s in STATUSES if s != "retracted")
"""What a query can ask for: a retracted memory leaves every read model."""

_COLUMNS = """m.memory_id, m.user_id, m.text, m.kind, m.slot, m.value, coalesce(m.polarity, 'holds')
        AS polarity, m.valid_from, m.version, m.correlation_id, m.created_at, m.recorded_at,
        m.episode_id, m.source, coalesce(m.sensitive, false) AS sensitive"""

_VALID_AT = "($3::timestamptz IS NULL OR (m.valid_from <= $3 AND ({end} IS NULL OR {end} > $3)))"

_NOW = f"""SELECT {_COLUMNS}, m.status, m.valid_to, m.superseded_by
    FROM {{memories}} m
    WHERE m.user_id = $1 AND m.status = ANY($2::text[]) AND m.created_event_id IS NOT NULL
      AND {_VALID_AT.format(end="m.valid_to")}
    ORDER BY m.created_at, m.memory_id"""

# The lifecycle row of each memory whose state held at $4 (recorded by then, and not followed by
# another row recorded by then) has its state then; the memory must not be retracted now.
_AS_OF = f"""SELECT {_COLUMNS}, s.status, s.state_valid_to AS valid_to, s.superseded_by
    FROM {{memory_lifecycle}} s JOIN {{memories}} m USING (memory_id)
    WHERE s.user_id = $1 AND s.recorded_at <= $4 AND (s.recorded_until IS NULL OR s.recorded_until > $4)
      AND m.user_id = $1 AND m.status <> 'retracted' AND m.created_event_id IS NOT NULL
      AND m.recorded_at <= $4 AND s.status = ANY($2::text[])
      AND {_VALID_AT.format(end="s.state_valid_to")}
    ORDER BY m.created_at, m.memory_id"""


def parse_moment(text: str, *, option: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` accepted), or a date (``2024-06-01``: midnight UTC).

    :raises InvalidMemoryQuery: not ISO, or a time of day without a zone.
    """
    cleaned = text.strip()
    try:
        if len(cleaned) == 10:  # YYYY-MM-DD: a calendar day, taken in UTC
            return datetime.combine(date.fromisoformat(cleaned), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(cleaned.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidMemoryQuery(
            f"{option} {text!r} is not an ISO time: use e.g. 2026-05-01T00:00:00Z or 2026-05-01"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidMemoryQuery(f"{option} {text!r} has no time zone: add one, e.g. {cleaned}Z")
    return parsed


def memories_sql(*, as_of: bool) -> str:
    """The statement of :func:`query_memories` on the views (for ``EXPLAIN``): parameters user,
    statuses, valid-at, and with ``as_of`` the moment."""
    return (_AS_OF if as_of else _NOW).format(**MEMORIES.views())


def _aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise InvalidMemoryQuery(f"{name} needs a time zone, e.g. 2026-05-01T00:00:00Z")


def statuses_for(statuses: Sequence[str] | None, *, valid_at: datetime | None) -> tuple[MemoryStatus, ...]:
    """The statuses a query returns: those asked for; by default ``current`` only, or every
    listed status with ``valid_at`` (validity at that moment is then the filter).

    :raises InvalidMemoryQuery: an unknown status, or ``retracted``.
    """
    if statuses is None:
        return LISTED_STATUSES if valid_at is not None else ("current",)
    if "retracted" in statuses:
        raise InvalidMemoryQuery(
            "retracted memories leave every read model: `memsaga history MEMORY_ID` shows their events"
        )
    if unknown := sorted(set(statuses) - set(LISTED_STATUSES)):
        raise InvalidMemoryQuery(
            f"unknown status {', '.join(unknown)}: choose from {', '.join(LISTED_STATUSES)}"
        )
    return tuple(s for s in LISTED_STATUSES if s in statuses)


async def query_memories(
    pool: asyncpg.Pool,
    user_id: str,
    *,
    as_of: datetime | None = None,
    valid_at: datetime | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Memory]:
    """A user's memories, oldest first, in both kinds of time.

    - ``as_of``: what memsaga believed then (system time): the events recorded up to ``as_of``;
      status, ``valid_to`` and ``superseded_by`` are as they were then.
    - ``valid_at``: what was true in the world then (``valid_from <= valid_at < valid_to``),
      as known now, or as known at ``as_of`` when both are given.
    - ``statuses``: see :func:`statuses_for` (default ``current`` only; with ``valid_at``, every
      status but retracted). Retracted memories are never returned, not even ``as_of`` a
      moment before their retraction.

    Read as ``user_id`` (:func:`projections.row_security.as_user`): no other user's row can match.

    :raises InvalidMemoryQuery: a time without a time zone, or an unknown status.
    :raises ProjectionNotInitialized: the memories projection never ran.
    :raises ReadModelOutdated: the active read model predates version 2 (rebuild it).
    :raises ReaderRoleUnavailable: the pool's login cannot switch to the read role.
    """
    _aware("as_of", as_of)
    _aware("valid_at", valid_at)
    wanted = list(statuses_for(statuses, valid_at=valid_at))
    try:
        async with as_user(pool, user_id) as conn:
            if as_of is None:
                rows = await conn.fetch(memories_sql(as_of=False), user_id, wanted, valid_at)
            else:
                rows = await conn.fetch(memories_sql(as_of=True), user_id, wanted, valid_at, as_of)
    except asyncpg.UndefinedTableError:
        raise ProjectionNotInitialized(MEMORIES.name) from None
    except asyncpg.UndefinedColumnError:
        raise ReadModelOutdated(MEMORIES.name) from None
    return _MEMORIES.validate_python([dict(r) for r in rows])  # (pydantic's core: faster than construct)


async def list_memories(pool: asyncpg.Pool, user_id: str) -> list[Memory]:
    """A user's current memories, oldest first (:func:`query_memories` with no options).

    :raises ProjectionNotInitialized: the memories projection never ran.
    :raises ReadModelOutdated: the active read model predates version 2 (rebuild it).
    """
    return await query_memories(pool, user_id)
