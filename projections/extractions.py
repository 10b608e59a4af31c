"""The ``extractions`` read model: each saga's status and timeline, by correlation id.

Disorder-safe without reading other events: the status is that of the furthest lifecycle
step seen (each event type has a rank; a lower-ranked event arriving late cannot move the
status back), every other field is set by exactly one event type (or agreed on by several),
and counts are recomputed from the timeline rather than incremented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from eventstore import EventPayload, RecordedEvent
from eventstore.postgres import Connection
from projections.base import Handler, Projection, Tables, payload_of
from projections.errors import ProjectionNotInitialized
from projections.row_security import as_user
from projections.sealed import every_version
from sagas.forgetting import UserForgotten
from sagas.memory_extraction import events as ev

DDL = """
CREATE TABLE {extractions} (
    correlation_id      text        PRIMARY KEY,
    episode_id          text,
    user_id             text,
    source              text,
    status              text,
    status_rank         integer     NOT NULL DEFAULT 0,
    candidates          integer,
    duplicates          integer,
    memories_created    integer     NOT NULL DEFAULT 0,
    memories_retracted  integer     NOT NULL DEFAULT 0,
    review_requested_at timestamptz,
    review_outcome      text,
    review_note         text,
    reason              text,
    failed_step         text,
    error               text,
    requested_at        timestamptz,
    updated_at          timestamptz NOT NULL,
    last_position       bigint      NOT NULL,
    events              integer     NOT NULL DEFAULT 0
);
CREATE INDEX ON {extractions} (status);
CREATE INDEX ON {extractions} (requested_at);
CREATE TABLE {extraction_timeline} (
    correlation_id  text        NOT NULL,
    event_id        uuid        NOT NULL,
    position        bigint      NOT NULL,
    event_type      text        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    occurred_at     timestamptz NOT NULL,
    summary         text        NOT NULL,
    PRIMARY KEY (correlation_id, event_id)
);
CREATE INDEX ON {extraction_timeline} (correlation_id, position);
"""

# Columns an event type may set; each is set by one type only, so arrival order does not matter.
_SETTABLE = frozenset(
    {
        "source",
        "candidates",
        "duplicates",
        "review_requested_at",
        "review_outcome",
        "review_note",
        "reason",
        "failed_step",
        "error",
        "requested_at",
    }
)

Fields = Callable[[RecordedEvent], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Step:
    status: str | None
    rank: int
    fields: Fields
    summary: Callable[[RecordedEvent], str]


async def _record(conn: Connection, tables: Tables, event: RecordedEvent, step: _Step) -> None:
    extractions, timeline = tables["extractions"], tables["extraction_timeline"]
    await conn.execute(
        f"""INSERT INTO {timeline} (correlation_id, event_id, position, event_type, stream_id, stream_version,
                occurred_at, summary) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
        event.correlation_id,
        event.event_id,
        event.position,
        event.event_type,
        event.stream_id,
        event.version,
        event.occurred_at,
        step.summary(event),
    )
    fields = step.fields(event)
    assert set(fields) <= _SETTABLE, f"unknown extraction columns {set(fields) - _SETTABLE}"
    columns = list(fields)
    params = ", ".join(f"${i}" for i in range(8, 8 + len(columns)))
    episode_id = event.stream_id.split("-", 1)[1] if event.category == "episode" else None
    await conn.execute(
        f"""INSERT INTO {extractions} AS x (correlation_id, episode_id, user_id, status, status_rank,
                updated_at, last_position{"".join(", " + c for c in columns)})
            VALUES ($1, $2, $3, $4, $5, $6, $7{", " + params if columns else ""})
            ON CONFLICT (correlation_id) DO UPDATE SET
                episode_id = coalesce(x.episode_id, EXCLUDED.episode_id),
                user_id = coalesce(x.user_id, EXCLUDED.user_id),
                status = CASE WHEN EXCLUDED.status_rank > x.status_rank
                              THEN EXCLUDED.status ELSE x.status END,
                status_rank = greatest(x.status_rank, EXCLUDED.status_rank),
                updated_at = greatest(x.updated_at, EXCLUDED.updated_at),
                last_position = greatest(x.last_position, EXCLUDED.last_position)
                {"".join(f", {c} = EXCLUDED.{c}" for c in columns)}""",
        event.correlation_id,
        episode_id,
        event.user_id,
        step.status,
        step.rank,
        event.occurred_at,
        event.position,
        *fields.values(),
    )
    await conn.execute(
        f"""UPDATE {extractions} SET
                events = (SELECT count(*) FROM {timeline} t WHERE t.correlation_id = $1),
                memories_created = (SELECT count(*) FROM {timeline} t
                                    WHERE t.correlation_id = $1 AND t.event_type = 'MemoryCreated'),
                memories_retracted = (SELECT count(*) FROM {timeline} t
                                      WHERE t.correlation_id = $1 AND t.event_type = 'MemoryRetracted')
            WHERE correlation_id = $1""",
        event.correlation_id,
    )


def _handler(step: _Step) -> Handler:
    async def handle(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
        await _record(conn, tables, event, step)

    return handle


def _none(_: RecordedEvent) -> dict[str, Any]:
    return {}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _requested(e: RecordedEvent) -> dict[str, Any]:
    return {"source": payload_of(e, ev.ExtractionRequested).source, "requested_at": e.occurred_at}


def _review_outcome(e: RecordedEvent) -> dict[str, Any]:
    if e.event_type == ev.ReviewApproved.event_type:
        return {"review_outcome": "approved", "review_note": payload_of(e, ev.ReviewApproved).note}
    rejected = payload_of(e, ev.ReviewRejected)
    outcome = "timed_out" if rejected.timed_out else "rejected"
    return {"review_outcome": outcome, "review_note": rejected.reason}


def _compensated(e: RecordedEvent) -> dict[str, Any]:
    p = payload_of(e, ev.ExtractionCompensated)
    return {"reason": p.reason, "failed_step": p.failed_step}


def _failed(e: RecordedEvent) -> dict[str, Any]:
    p = payload_of(e, ev.CompensationFailed)
    return {"error": f"{p.step}: {p.error}"}


STEPS: dict[type[EventPayload], _Step] = {
    ev.ExtractionRequested: _Step("requested", 1, _requested, lambda e: f"source {e.payload['source']}"),
    ev.EpisodeRecorded: _Step("recorded", 2, _none, lambda e: f"{e.payload['text_bytes']} bytes"),
    ev.CandidatesExtracted: _Step(
        "extracted",
        3,
        lambda e: {"candidates": len(payload_of(e, ev.CandidatesExtracted).candidates)},
        lambda e: _plural(len(e.payload["candidates"]), "candidate"),
    ),
    ev.CandidatesEmbedded: _Step(
        "embedded", 4, _none, lambda e: _plural(len(e.payload["embeddings"]), "vector")
    ),
    ev.CandidatesDeduplicated: _Step(
        "embedded",
        5,
        lambda e: {"duplicates": len(payload_of(e, ev.CandidatesDeduplicated).skipped)},
        lambda e: f"{len(e.payload['kept'])} kept, {len(e.payload['skipped'])} duplicate",
    ),
    ev.CandidatesReconciled: _Step(
        "embedded",
        5,
        _none,
        lambda e: (
            f"{len(e.payload['kept'])} kept, {len(e.payload['duplicates'])} same fact,"
            f" {len(e.payload['supersessions'])} superseding, {len(e.payload['invalidations'])} ending"
        ),
    ),
    ev.ReviewRequested: _Step(
        "reviewing",
        6,
        lambda e: {"review_requested_at": e.occurred_at},
        lambda e: "; ".join(e.payload["reasons"]) or "review requested",
    ),
    ev.ReviewApproved: _Step("reviewing", 7, _review_outcome, lambda e: "approved"),
    ev.ReviewRejected: _Step("reviewing", 7, _review_outcome, lambda e: f"rejected: {e.payload['reason']}"),
    ev.MemoryCreated: _Step(None, 0, _none, lambda e: f"memory {e.payload['memory_id']}"),
    ev.MemoryRetracted: _Step(
        None, 0, _none, lambda e: f"memory {e.payload['memory_id']}: {e.payload['reason']}"
    ),
    ev.MemorySuperseded: _Step(
        None, 0, _none, lambda e: f"memory {e.payload['memory_id']} superseded by {e.payload['successor_id']}"
    ),
    ev.MemoryInvalidated: _Step(
        None, 0, _none, lambda e: f"memory {e.payload['memory_id']} ended: {e.payload['statement']}"
    ),
    ev.MemoryReinstated: _Step(
        None, 0, _none, lambda e: f"memory {e.payload['memory_id']} reinstated: {e.payload['reason']}"
    ),
    ev.ExtractionCompleted: _Step(
        "completed",
        10,
        _none,
        lambda e: _plural(e.payload["memories_created"], "memory") + " created",
    ),
    ev.ExtractionCompensated: _Step("compensated", 11, _compensated, lambda e: e.payload["reason"]),
    ev.CompensationFailed: _Step(
        "failed", 12, _failed, lambda e: f"{e.payload['step']}: {e.payload['error']}"
    ),
}


async def on_user_forgotten(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """The user's sagas leave both tables (the timeline by their correlation ids), in every version."""
    for extractions, timeline in zip(
        await every_version(conn, "extractions"),
        await every_version(conn, "extraction_timeline"),
        strict=True,
    ):
        await conn.execute(
            f"DELETE FROM {timeline} WHERE correlation_id IN"
            f" (SELECT correlation_id FROM {extractions} WHERE user_id = $1)",
            event.user_id,
        )
        await conn.execute(f"DELETE FROM {extractions} WHERE user_id = $1", event.user_id)


EXTRACTIONS = Projection.declare(
    "extractions",
    version=2,
    tables=("extractions", "extraction_timeline"),
    ddl=DDL,
    handlers={model: _handler(step) for model, step in STEPS.items()} | {UserForgotten: on_user_forgotten},
    description="each extraction saga's status and timeline, by correlation id",
)


class TimelineEntry(BaseModel):
    """One event of a saga."""

    model_config = ConfigDict(frozen=True)

    position: int
    event_type: str
    stream_id: str
    occurred_at: datetime
    summary: str


class Extraction(BaseModel):
    """One extraction saga as the read model holds it."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    episode_id: str | None
    user_id: str | None
    source: str | None
    status: str
    candidates: int | None
    duplicates: int | None
    memories_created: int
    memories_retracted: int
    review_outcome: str | None
    reason: str | None
    failed_step: str | None
    error: str | None
    requested_at: datetime | None
    updated_at: datetime
    events: int
    timeline: list[TimelineEntry] = []


_COLUMNS = """correlation_id, episode_id, user_id, source, status, candidates, duplicates, memories_created,
    memories_retracted, review_outcome, reason, failed_step, error, requested_at, updated_at, events"""


async def get_extraction(pool: asyncpg.Pool, correlation_id: str) -> Extraction | None:
    """One saga with its timeline (position order), or None when no saga has this correlation id.

    :raises ProjectionNotInitialized: the extractions projection never ran.
    """
    views = EXTRACTIONS.views()
    try:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(
                f"""SELECT {_COLUMNS} FROM {views["extractions"]}
                    WHERE correlation_id = $1 AND status IS NOT NULL""",
                correlation_id,
            )
            if row is None:
                return None
            steps = await conn.fetch(
                f"""SELECT position, event_type, stream_id, occurred_at, summary
                    FROM {views["extraction_timeline"]} WHERE correlation_id = $1 ORDER BY position""",
                correlation_id,
            )
    except asyncpg.UndefinedTableError:
        raise ProjectionNotInitialized(EXTRACTIONS.name) from None
    return Extraction(**dict(row), timeline=[TimelineEntry(**dict(s)) for s in steps])


async def list_extractions(
    pool: asyncpg.Pool, *, status: str | None = None, limit: int = 50, user_id: str | None = None
) -> list[Extraction]:
    """The most recently updated sagas (without timelines), optionally of one status.

    Every user's (an operator's view, as the pool's login) unless ``user_id`` is given: then
    that user's only, read as them (:func:`projections.row_security.as_user`).

    :raises ProjectionNotInitialized: the extractions projection never ran.
    :raises ReaderRoleUnavailable: with ``user_id``, the pool's login cannot switch to the read role.
    """
    view = EXTRACTIONS.views()["extractions"]
    sql = f"""SELECT {_COLUMNS} FROM {view} WHERE status IS NOT NULL AND ($1::text IS NULL OR status = $1)
                AND ($3::text IS NULL OR user_id = $3)
                ORDER BY updated_at DESC, correlation_id LIMIT $2"""
    try:
        if user_id is None:
            rows = await pool.fetch(sql, status, limit, None)
        else:
            async with as_user(pool, user_id) as conn:
                rows = await conn.fetch(sql, status, limit, user_id)
    except asyncpg.UndefinedTableError:
        raise ProjectionNotInitialized(EXTRACTIONS.name) from None
    return [Extraction(**dict(r)) for r in rows]
