"""One memory's history, read from the event store (the source of truth, not a read model).

Every event of the memory's stream in order, each with where it came from: the episode that
caused it (a text excerpt of its ``EpisodeRecorded``, from the blob store when the text was
stored by hash; who reviewed it), the saga (its workflow id and Temporal UI link), what it
superseded or was superseded by, and why it was retracted or reinstated. The JSON form
(``memsaga.history/v1``) is stable for tools: fields are only ever added (docs/memories.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from eventstore import BlobNotFound, BlobStore, EventStore, RecordedEvent
from eventstore.encryption import ERASED
from eventstore.errors import DataErased
from memsaga.retraction import MemoryNotFound
from memsaga.trace import workflow_url
from sagas.memory_extraction.events import (
    EpisodeRecorded,
    ExtractionRequested,
    MemoryCreated,
    MemoryReinstated,
    MemorySuperseded,
    ReviewApproved,
    ReviewRejected,
    episode_stream,
    memory_stream,
)
from sagas.memory_extraction.lifecycle import MemoryStatus, memory_state

HISTORY_FORMAT = "memsaga.history/v1"
EXCERPT_CHARS = 200


class Episode(BaseModel):
    """The episode an event came from: its text (an excerpt) and its review."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    excerpt: str | None
    """The first characters of the episode's text; None when it could not be read (see ``text``)."""
    text: Literal["inline", "blob", "blob missing", "not recorded"]
    """Where the text came from: inline in ``EpisodeRecorded``, the blob store by hash, a hash
    the blob store does not hold, or no ``EpisodeRecorded`` at all."""
    text_sha256: str | None
    source: str | None
    workflow_id: str | None
    reviewer: str | None
    """Who approved (or rejected) the episode's candidates; None when nobody reviewed them."""
    review: Literal["approved", "rejected"] | None


class Supersession(BaseModel):
    """Another memory this one superseded (its ``MemorySuperseded`` names this one as successor)."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    event_id: str
    valid_to: datetime
    recorded_at: datetime
    undone: bool = False
    """A ``MemoryReinstated`` of that memory undid it (a compensated saga): it holds again."""


class HistoryEntry(BaseModel):
    """One event of the memory's stream, with its provenance and what it says."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    version: int
    position: int
    recorded_at: datetime
    """System time: when memsaga recorded it."""
    occurred_at: datetime
    """When the episode behind it happened (the saga's time)."""
    correlation_id: str
    summary: str
    workflow_id: str | None = None
    workflow_url: str | None = None
    episode: Episode | None = None
    # What the event says (None where its type does not say it):
    text: str | None = None
    kind: str | None = None
    slot: str | None = None
    value: str | None = None
    polarity: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    successor_id: str | None = None
    statement: str | None = None
    compensates_event_id: str | None = None
    compensates: str | None = None
    """The type and version of the event it undoes, when that event is in this stream."""
    reason: str | None = None
    retracted_by: str | None = None
    supersedes: list[Supersession] = []


class MemoryHistory(BaseModel):
    """A memory's state now and every event that made it so."""

    model_config = ConfigDict(frozen=True)

    format: str = HISTORY_FORMAT
    memory_id: str
    user_id: str
    status: MemoryStatus
    text: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    superseded_by: str | None
    supersedes: list[Supersession]
    events: list[HistoryEntry]


def excerpt(text: str, width: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _episode(store: EventStore, blobs: BlobStore | None, episode_id: str) -> Episode:
    events = await store.read_stream(episode_stream(episode_id))
    recorded = next((e for e in events if e.event_type == EpisodeRecorded.event_type), None)
    requested = next((e for e in events if e.event_type == ExtractionRequested.event_type), None)
    reviews = [e for e in events if e.event_type in (ReviewApproved.event_type, ReviewRejected.event_type)]
    text, source, sha = None, None, None
    where: Literal["inline", "blob", "blob missing", "not recorded"] = "not recorded"
    if recorded is not None:
        p = EpisodeRecorded.model_validate(recorded.payload)
        source, sha = p.source, p.text_sha256
        if p.text is not None:
            text, where = p.text, "inline"
        elif blobs is not None:
            try:
                data = await blobs.get(p.text_sha256, user_id=recorded.user_id)
                text, where = data.decode("utf-8", errors="replace"), "blob"
            except BlobNotFound:
                where = "blob missing"
            except DataErased:
                text, where = ERASED, "blob"
        else:
            where = "blob missing"
    review = reviews[-1] if reviews else None
    return Episode(
        episode_id=episode_id,
        excerpt=excerpt(text) if text is not None else None,
        text=where,
        text_sha256=sha,
        source=source,
        workflow_id=requested.payload.get("workflow_id") if requested else None,
        reviewer=review.payload.get("reviewer") if review else None,
        review=None
        if review is None
        else "approved"
        if review.event_type == "ReviewApproved"
        else "rejected",
    )


async def _supersedes(store: EventStore, memory_id: str, user_id: str) -> list[Supersession]:
    # The event store, not a read model: the user's MemorySuperseded events naming this memory
    # (find_events filters by user first, on the user index of the events table).
    found = await store.find_events(
        MemorySuperseded.event_type, payload_field="successor_id", values=[memory_id], user_id=user_id
    )
    supersessions = []
    for event in found:
        p = MemorySuperseded.model_validate(event.payload)
        later = await store.read_stream(memory_stream(p.memory_id), from_version=event.version + 1)
        undone = any(
            e.event_type == MemoryReinstated.event_type
            and e.payload.get("compensates_event_id") == str(event.event_id)
            for e in later
        )
        supersessions.append(
            Supersession(
                memory_id=p.memory_id,
                event_id=str(event.event_id),
                valid_to=p.valid_to,
                recorded_at=event.recorded_at,
                undone=undone,
            )
        )
    return supersessions


_SAYS = ("text", "kind", "slot", "value", "polarity", "valid_from", "valid_to", "successor_id", "statement",
         "compensates_event_id", "reason", "retracted_by")  # fmt: skip


def _summary(event: RecordedEvent, undone: str | None) -> str:
    p = event.payload
    match event.event_type:
        case "MemoryCreated":
            return f"created: {p.get('text')}"
        case "MemorySuperseded":
            return f"superseded by {p.get('successor_id')} (true until {p.get('valid_to')})"
        case "MemoryInvalidated":
            return f"invalidated: {p.get('statement')} (true until {p.get('valid_to')})"
        case "MemoryReinstated":
            return f"reinstated, undoing {undone or p.get('compensates_event_id')}: {p.get('reason')}"
        case "MemoryRetracted":
            by = p.get("retracted_by") or "its saga's compensation"
            return f"retracted by {by}: {p.get('reason')}"
    return event.event_type


async def memory_history(
    store: EventStore,
    memory_id: str,
    *,
    blobs: BlobStore | None = None,
    temporal_ui: str | None = None,
    namespace: str = "default",
) -> MemoryHistory:
    """Every event of ``memory_id``'s stream, in order, with its provenance.

    ``blobs`` reads episode texts stored by hash; ``temporal_ui`` (the UI's base URL) adds a
    link to each event's saga.

    :raises MemoryNotFound: the store holds no event of that memory.
    """
    events = await store.read_stream(memory_stream(memory_id))
    state = memory_state(events)
    if state is None:
        raise MemoryNotFound(memory_id)
    episodes: dict[str, Episode] = {}
    for episode_id in dict.fromkeys(
        str(e.payload["episode_id"]) for e in events if e.payload.get("episode_id")
    ):
        episodes[episode_id] = await _episode(store, blobs, episode_id)
    supersedes = await _supersedes(store, memory_id, state.user_id)
    by_id = {str(e.event_id): e for e in events}
    entries = []
    for event in events:
        says: dict[str, Any] = {k: event.payload[k] for k in _SAYS if event.payload.get(k) is not None}
        if event.event_type == MemoryCreated.event_type:
            says["valid_from"] = MemoryCreated.model_validate(event.payload).valid_from or event.occurred_at
            says["supersedes"] = supersedes
        undone = by_id.get(str(event.payload.get("compensates_event_id")))
        if undone is not None:
            says["compensates"] = f"{undone.event_type} (version {undone.version})"
        workflow = event.metadata.get("workflow_id")
        run = event.metadata.get("workflow_run_id")
        entries.append(
            HistoryEntry(
                event_id=str(event.event_id),
                event_type=event.event_type,
                version=event.version,
                position=event.position,
                recorded_at=event.recorded_at,
                occurred_at=event.occurred_at,
                correlation_id=event.correlation_id,
                summary=_summary(event, says.get("compensates")),
                workflow_id=workflow if isinstance(workflow, str) else None,
                workflow_url=(
                    workflow_url(temporal_ui, namespace, workflow, run if isinstance(run, str) else None)
                    if temporal_ui and isinstance(workflow, str)
                    else None
                ),
                episode=episodes.get(str(event.payload.get("episode_id"))),
                **says,
            )
        )
    return MemoryHistory(
        memory_id=memory_id,
        user_id=state.user_id,
        status=state.status,
        text=state.text,
        valid_from=state.valid_from,
        valid_to=state.valid_to,
        superseded_by=state.superseded_by,
        supersedes=supersedes,
        events=entries,
    )


def history_lines(history: MemoryHistory) -> Sequence[str]:
    """The history as plain lines for a terminal (the CLI styles them)."""
    lines = [
        f"memory {history.memory_id} of {history.user_id}: {history.status}"
        + (f", superseded by {history.superseded_by}" if history.superseded_by else ""),
    ]
    for entry in history.events:
        lines.append(f"{entry.version}. {entry.event_type}  recorded {entry.recorded_at.isoformat()}")
        lines.append(f"   {entry.summary}")
        if entry.supersedes:
            names = [s.memory_id + (" (undone since)" if s.undone else "") for s in entry.supersedes]
            lines.append("   superseded " + ", ".join(names))
        if entry.episode is not None:
            ep = entry.episode
            text = f"“{ep.excerpt}”" if ep.excerpt is not None else f"(text: {ep.text})"
            lines.append(f"   episode {ep.episode_id}: {text}")
            if ep.review is not None:
                lines.append(f"   review: {ep.review} by {ep.reviewer or 'unknown'}")
        if entry.workflow_id:
            lines.append(f"   saga {entry.workflow_url or entry.workflow_id}")
    return lines
