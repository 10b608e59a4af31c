"""Benchmark data: events shaped like the saga's, for appends and for bulk-filled stores.

Appends write ``MemoryCreated`` events (the saga's most common write). Bulk stores hold
what completed sagas leave behind: per saga, six events in ``episode-<n>`` and two
``MemoryCreated`` in ``memory-<n>a`` / ``memory-<n>b`` (8 events, a quarter of them
memories). Bulk filling is direct SQL (``INSERT … SELECT generate_series``): setup, not
what is measured; the append path proper is measured by :mod:`bench.appends`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from eventstore import EventPayload, NewEvent
from eventstore.codec import dump_json
from sagas.memory_extraction.events import (
    Candidate,
    CandidatesDeduplicated,
    CandidatesEmbedded,
    CandidatesExtracted,
    EmbeddingRef,
    EpisodeRecorded,
    ExtractionCompleted,
    ExtractionRequested,
    MemoryCreated,
)

EVENTS_PER_SAGA = 8
USERS = 1000
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
EPISODE = (
    "User: I moved to Lisbon last spring and I work as a data engineer at a logistics company. "
    "I prefer green tea over coffee, and my sister Ana lives in Porto. "
    "Assistant: Noted. Anything else you would like me to remember?"
)
MEMORY_TEXTS = ("The user lives in Lisbon and works as a data engineer.", "The user prefers green tea.")


def memory_created(
    memory_id: str, user_id: str, text: str, content_hash: str, vector_sha256: str
) -> MemoryCreated:
    """A ``MemoryCreated`` payload like the saga's (same fields, realistic sizes)."""
    return MemoryCreated(
        memory_id=memory_id,
        user_id=user_id,
        episode_id=f"ep-{memory_id}",
        text=text,
        kind="fact",
        content_hash=content_hash,
        vector_sha256=vector_sha256,
        dimension=256,
        embedder="hashing-v1",
        source="chat",
    )


def append_event(n: int, *, prefix: str) -> NewEvent:
    """The ``n``-th event an append benchmark writes (distinct ids and hashes)."""
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}:{n}").hex
    payload = memory_created(
        f"{prefix}-{n}", f"user-{n % USERS}", MEMORY_TEXTS[n % 2], key * 2, key[::-1] * 2
    )
    return NewEvent.of(
        payload,
        correlation_id=f"extract-{prefix}-{n}",
        causation_id=f"extract-{prefix}-{n}",
        user_id=payload.user_id,
        occurred_at=EPOCH + timedelta(milliseconds=n),
    )


BaselineRow = tuple[Any, ...]
BASELINE_COLUMNS = (
    "event_id",
    "stream_id",
    "version",
    "event_type",
    "event_version",
    "correlation_id",
    "causation_id",
    "user_id",
    "occurred_at",
    "payload",
    "metadata",
)


def baseline_row(event: NewEvent, stream_id: str, version: int) -> BaselineRow:
    """The row memsaga stores for ``event``, in :data:`BASELINE_COLUMNS` order (JSON as text)."""
    return (
        event.event_id,
        stream_id,
        version,
        event.event_type,
        event.event_version,
        event.correlation_id,
        event.causation_id,
        event.user_id,
        event.occurred_at,
        dump_json(event.payload),
        dump_json(event.metadata),
    )


# --- Bulk stores ------------------------------------------------------------------------------

_H1, _H2 = "@H1@", "@H2@"  # replaced per saga by 64 hex digits


def _saga_template() -> list[tuple[str, int, EventPayload]]:
    """(stream, version, payload) of one saga's events in position order; ``@S@`` is the saga number."""
    candidates = [
        Candidate(candidate_id=f"c@S@{s}", text=t, kind="fact", content_hash=h)
        for s, t, h in (("a", MEMORY_TEXTS[0], _H1), ("b", MEMORY_TEXTS[1], _H2))
    ]
    episode = "episode-@S@"
    return [
        (
            episode,
            1,
            ExtractionRequested(
                workflow_id="extract-@S@",
                episode_id="@S@",
                source="chat",
                extractor="rules",
                embedder="hashing",
            ),
        ),
        (
            episode,
            2,
            EpisodeRecorded(
                episode_id="@S@", source="chat", text=EPISODE, text_sha256=_H1, text_bytes=len(EPISODE)
            ),
        ),
        (episode, 3, CandidatesExtracted(extractor="rules", candidates=candidates)),
        (
            episode,
            4,
            CandidatesEmbedded(
                embedder="hashing",
                embeddings=[
                    EmbeddingRef(candidate_id=c.candidate_id, vector_sha256=c.content_hash, dimension=256)
                    for c in candidates
                ],
            ),
        ),
        (episode, 5, CandidatesDeduplicated(kept=[c.candidate_id for c in candidates], skipped=[])),
        ("memory-@S@a", 1, memory_created("@S@a", "user-@U@", MEMORY_TEXTS[0], _H1, _H2)),
        ("memory-@S@b", 1, memory_created("@S@b", "user-@U@", MEMORY_TEXTS[1], _H2, _H1)),
        (
            episode,
            6,
            ExtractionCompleted(candidates=2, duplicates=0, memories_created=2, memory_ids=["@S@a", "@S@b"]),
        ),
    ]


_FILL = f"""
INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version, correlation_id,
                            causation_id, user_id, occurred_at, payload, metadata)
SELECT gen_random_uuid(), replace(t.stream, '@S@', s::text), t.version, t.event_type, 1,
       'extract-' || s, 'extract-' || s, 'user-' || (s % {USERS}),
       $3::timestamptz + s * interval '1 millisecond',
       replace(replace(replace(replace(t.payload, '@S@', s::text), '@U@', (s % {USERS})::text),
               '@H1@', md5(s || 'a') || md5(s || 'A')), '@H2@', md5(s || 'b') || md5(s || 'B'))::jsonb,
       '{{}}'::jsonb
FROM generate_series($1::bigint, $2::bigint) AS s
CROSS JOIN unnest($4::text[], $5::bigint[], $6::text[], $7::text[]) WITH ORDINALITY
     AS t(stream, version, event_type, payload, ord)
ORDER BY s, t.ord
"""


async def fill_store(
    pool: asyncpg.Pool,
    events: int,
    *,
    first_saga: int = 1,
    chunk_sagas: int = 10_000,
    on_events: Callable[[int], None] | None = None,
) -> int:
    """Append ``events // 8`` sagas' events (numbered from ``first_saga``); the next saga number."""
    template = _saga_template()
    columns = (
        [stream for stream, _, _ in template],
        [version for _, version, _ in template],
        [payload.event_type for _, _, payload in template],
        [dump_json(payload.model_dump(mode="json")) for _, _, payload in template],
    )
    sagas = max(events // EVENTS_PER_SAGA, 1)
    saga = first_saga
    while saga < first_saga + sagas:
        last = min(saga + chunk_sagas, first_saga + sagas) - 1
        await pool.execute(_FILL, saga, last, EPOCH, *columns)
        if on_events is not None:
            on_events((last - saga + 1) * EVENTS_PER_SAGA)
        saga = last + 1
    # Same table state for every round: hint bits set, statistics fresh.
    await pool.execute("VACUUM (ANALYZE) memsaga.events")
    return saga
