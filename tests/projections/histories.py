"""Deterministic saga histories for projection tests, and what the read models should say.

The same seed gives the same events (ids, times, payloads) in the same append order, so
several fresh databases get identical positions and can be compared row by row.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventstore import EventPayload, NewEvent, PostgresEventStore
from sagas.memory_extraction import events as ev

_NS = uuid.UUID("3f1d2c4e-8b7a-4c1e-9d2f-5a6b7c8d9e0f")
BASE_TIME = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Append:
    """One append: a stream and its events."""

    stream_id: str
    events: list[NewEvent]


@dataclass
class History:
    """Appends in order, and the outcome each saga should have."""

    appends: list[Append] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # correlation id -> final status

    @property
    def events(self) -> list[NewEvent]:
        return [e for a in self.appends for e in a.events]

    def memories(self) -> dict[str, set[tuple[str, str]]]:
        """user id -> {(memory id, text)} of the memories that were created and not retracted."""
        created: dict[str, tuple[str, str, str]] = {}
        retracted: set[str] = set()
        for event in self.events:
            if event.event_type == ev.MemoryCreated.event_type:
                p = event.payload
                created[p["memory_id"]] = (p["user_id"], p["memory_id"], p["text"])
            elif event.event_type == ev.MemoryRetracted.event_type:
                retracted.add(event.payload["memory_id"])
        result: dict[str, set[tuple[str, str]]] = {}
        for memory_id, (user, mid, text) in created.items():
            if memory_id not in retracted:
                result.setdefault(user, set()).add((mid, text))
        return result

    def count(self, event_types: tuple[str, ...] | None = None) -> int:
        return sum(1 for e in self.events if event_types is None or e.event_type in event_types)


async def append_all(store: PostgresEventStore, history: History) -> None:
    for append in history.appends:
        await store.append(append.stream_id, append.events)


def make_history(seed: int, sagas: int, *, users: int = 3, poison_text: str | None = None) -> History:
    """``sagas`` interleaved extraction sagas: completed, reviewed, compensated or failed.

    With ``poison_text``, the first memory's text is replaced by it (for handlers that choke).
    """
    rng = random.Random(seed)
    plans = [_saga(rng, seed, i, users) for i in range(sagas)]
    history = History()
    for plan in plans:
        history.statuses[plan.correlation_id] = plan.status
    # Round-robin: one append per saga at a time, so sagas interleave in the global order.
    steps = [list(p.appends) for p in plans]
    while any(steps):
        for queue in steps:
            if queue:
                history.appends.append(queue.pop(0))
    if poison_text is not None:
        _poison_first_memory(history, poison_text)
    return history


@dataclass
class _Plan:
    correlation_id: str
    status: str
    appends: list[Append]


class _Saga:
    def __init__(self, seed: int, index: int, user: str) -> None:
        self.seed, self.index, self.user = seed, index, user
        self.correlation_id = f"corr-{seed}-{index}"
        self.episode = f"ep-{seed}-{index}"
        self.step = 0
        self.last_id = f"cmd-{seed}-{index}"
        self.appends: list[Append] = []

    def event(
        self, payload: EventPayload, stream_id: str | None = None, *, traceparent: bool = False
    ) -> NewEvent:
        self.step += 1
        event_id = uuid.uuid5(_NS, f"{self.seed}:{self.index}:{self.step}")
        meta = {"traceparent": f"00-{event_id.hex}-{event_id.hex[:16]}-01"} if traceparent else {}
        new = NewEvent.of(
            payload,
            correlation_id=self.correlation_id,
            causation_id=self.last_id,
            occurred_at=BASE_TIME + timedelta(minutes=self.index, seconds=self.step),
            user_id=self.user,
            event_id=event_id,
            metadata=meta,
        )
        self.last_id = str(event_id)
        self.appends.append(Append(stream_id or ev.episode_stream(self.episode), [new]))
        return new


def _saga(rng: random.Random, seed: int, index: int, users: int) -> _Plan:
    s = _Saga(seed, index, f"user-{index % users}")
    outcome = rng.choice(["completed", "completed", "reviewed", "compensated", "failed"])
    s.event(
        ev.ExtractionRequested(
            workflow_id=f"extract:{s.episode}",
            episode_id=s.episode,
            source="chat",
            review_requested=outcome == "reviewed",
            extractor="rules",
            embedder="hash",
        ),
        traceparent=True,
    )
    s.event(
        ev.EpisodeRecorded(
            episode_id=s.episode, source="chat", text="...", text_sha256="0" * 64, text_bytes=3
        )
    )
    n = rng.randint(1, 3)
    candidates = [
        ev.Candidate(
            candidate_id=f"c{k}", text=f"fact {seed}-{index}-{k}", kind="fact", content_hash=f"{k:064x}"
        )
        for k in range(n)
    ]
    s.event(ev.CandidatesExtracted(extractor="rules", candidates=candidates))
    s.event(
        ev.CandidatesEmbedded(
            embedder="hash",
            embeddings=[
                ev.EmbeddingRef(candidate_id=c.candidate_id, vector_sha256="1" * 64, dimension=8)
                for c in candidates
            ],
        )
    )
    s.event(ev.CandidatesDeduplicated(kept=[c.candidate_id for c in candidates], skipped=[]))
    if outcome in ("reviewed", "failed"):
        s.event(
            ev.ReviewRequested(
                candidate_ids=[c.candidate_id for c in candidates], reasons=["asked"], timeout_seconds=60
            )
        )
        if outcome == "reviewed":
            s.event(ev.ReviewApproved(reviewer="ann"))
        else:
            s.event(ev.ReviewRejected(reviewer="ann", reason="not true"))
    memory_events = []
    for c in candidates:
        memory_id = f"mem-{seed}-{index}-{c.candidate_id}"
        created = ev.MemoryCreated(
            memory_id=memory_id,
            user_id=s.user,
            episode_id=s.episode,
            text=c.text,
            kind=c.kind,
            content_hash=c.content_hash,
            vector_sha256="1" * 64,
            dimension=8,
            embedder="hashing-v1",
            source="chat",
        )
        memory_events.append((memory_id, s.event(created, ev.memory_stream(memory_id))))
    if outcome in ("completed", "reviewed"):
        s.event(
            ev.ExtractionCompleted(
                candidates=n, duplicates=0, memories_created=n, memory_ids=[m for m, _ in memory_events]
            )
        )
        status = "completed"
    else:
        for memory_id, created_event in memory_events:
            s.event(
                ev.MemoryRetracted(
                    memory_id=memory_id,
                    user_id=s.user,
                    compensates_event_id=str(created_event.event_id),
                    reason="saga undone",
                ),
                ev.memory_stream(memory_id),
            )
        s.event(
            ev.ExtractionCompensated(
                reason="review rejected" if outcome == "failed" else "embedder down",
                failed_step="review" if outcome == "failed" else "store",
                retracted_memory_ids=[m for m, _ in memory_events],
                compensates_event_ids=[str(e.event_id) for _, e in memory_events],
            )
        )
        status = "compensated"
        if outcome == "failed":
            s.event(ev.CompensationFailed(step="notify", error="mailer down"))
            status = "failed"
    return _Plan(s.correlation_id, status, s.appends)


def _poison_first_memory(history: History, text: str) -> None:
    for append in history.appends:
        for i, event in enumerate(append.events):
            if event.event_type == ev.MemoryCreated.event_type:
                append.events[i] = event.model_copy(update={"payload": {**event.payload, "text": text}})
                return
