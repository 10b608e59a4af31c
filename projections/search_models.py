"""Vectors of several models in the ``memory_search`` read model, and which model serves each user.

A memory's vector of its creation stays in ``memory_search`` (its ``MemoryCreated``). A
re-extraction with another embedder records the new model's vector of every memory it left
unchanged (``EpisodeReextracted.vectors``); those go to ``memory_vectors``, one row per memory
and vector space (embedder name and dimension), each space with a partial HNSW index of its own
(:data:`INDEXED_SPACES`), so the new model's index fills beside the live one while queries still
use the old model.

``memory_search_serving`` says which space a user's queries are embedded in and compared with:
the space of the latest complete re-extraction covering the user (``ReextractionCompleted``
with no failed episode; scope ``user``: a row of that user, scope ``all``: the row ``''``, every
user), else the space of the user's first vector. Each candidate is ranked (a switch beats a
first vector; a later switch beats an earlier one; an earlier first vector beats a later one), so
any delivery order and any rebuild from position 0 end in the same rows.

Vectors are never computed here: they are read from the blob store by the hashes the events
carry, as for ``MemoryCreated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from eventstore import RecordedEvent
from eventstore.errors import DataErased
from eventstore.postgres import Connection
from projections.base import Executor, Tables, payload_of
from projections.errors import ProjectionsError
from projections.sealed import user_blobs
from sagas.memory_extraction.embedders import bytes_to_vector
from sagas.reextraction import EpisodeReextracted, ReextractionCompleted

INDEXED_SPACES: tuple[tuple[str, int], ...] = (("wordllama:l2_supercat_256", 256), ("hashing-v1", 256))
"""Vector spaces (embedder name, dimension) with an HNSW index; others are searched exactly."""

EVERY_USER = ""
"""``memory_search_serving.user_id`` of a switch of every user (a re-extraction of scope ``all``)."""


@dataclass(frozen=True)
class VectorSpace:
    """Vectors of one model: the embedder's recorded name and the dimension."""

    embedder: str
    dimension: int


def space_indexes(table: str) -> str:
    """One partial HNSW index (cosine) per indexed space on ``table``'s ``embedding``."""
    return "\n".join(
        f"CREATE INDEX ON {{{table}}} USING hnsw ((embedding::vector({dim})) vector_cosine_ops)"
        f" WHERE embedder = '{name}' AND dimension = {dim};"
        for name, dim in INDEXED_SPACES
    )


DDL = f"""
-- Vectors of a memory in other spaces than its creation's (re-extractions), one row per space.
CREATE TABLE {{memory_vectors}} (
    memory_id          text        NOT NULL,
    user_id            text        NOT NULL,
    embedder           text        NOT NULL,
    dimension          integer     NOT NULL,
    embedding          vector      NOT NULL,
    position           bigint      NOT NULL,
    PRIMARY KEY (memory_id, embedder, dimension)
);
CREATE INDEX ON {{memory_vectors}} (user_id, embedder, dimension);
{space_indexes("memory_vectors")}
-- The space each user's queries use: a row per user, and '' for a switch of every user.
CREATE TABLE {{memory_search_serving}} (
    user_id            text        PRIMARY KEY,
    embedder           text        NOT NULL,
    dimension          integer     NOT NULL,
    request_id         text,
    position           bigint      NOT NULL
);
"""

# A late vector of a retracted memory stays out (its row is a tombstone); of two vectors of one
# memory and space, the one of the later event wins.
_VECTORS = """INSERT INTO {memory_vectors} AS v (memory_id, user_id, embedder, dimension, embedding, position)
    SELECT x.memory_id, x.user_id, x.embedder, x.dimension, x.embedding::vector, x.position
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bigint[])
        AS x(memory_id, user_id, embedder, dimension, embedding, position)
    WHERE NOT EXISTS (SELECT 1 FROM {memory_search} m
                      WHERE m.memory_id = x.memory_id AND m.status = 'retracted')
    ON CONFLICT (memory_id, embedder, dimension) DO UPDATE SET
        user_id = EXCLUDED.user_id, embedding = EXCLUDED.embedding, position = EXCLUDED.position
    WHERE v.position < EXCLUDED.position"""

FORGET_VECTORS = "DELETE FROM {memory_vectors} WHERE memory_id = ANY($1::text[])"

_SERVE = """INSERT INTO {memory_search_serving} AS s (user_id, embedder, dimension, request_id, position)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bigint[])
    ON CONFLICT (user_id) DO UPDATE SET embedder = EXCLUDED.embedder, dimension = EXCLUDED.dimension,
        request_id = EXCLUDED.request_id, position = EXCLUDED.position
    WHERE CASE WHEN EXCLUDED.request_id IS NOT NULL
               THEN s.request_id IS NULL OR s.position < EXCLUDED.position
               ELSE s.request_id IS NULL AND s.position > EXCLUDED.position END"""

_SERVING = """SELECT embedder, dimension FROM {memory_search_serving}
    WHERE user_id = $1 OR user_id = ''
    ORDER BY (request_id IS NOT NULL) DESC,
             CASE WHEN request_id IS NOT NULL THEN position ELSE -position END DESC
    LIMIT 1"""


class VectorBlobMissing(ProjectionsError):
    """An event names a vector the blob store does not hold (the event is parked)."""

    def __init__(self, memory_id: str, sha256: str) -> None:
        self.memory_id = memory_id
        self.sha256 = sha256
        super().__init__(
            f"memory {memory_id} names vector blob {sha256}, which the blob store does not hold: "
            "restore the blob, then `memsaga project dlq retry`"
        )


def vector_literal(vector: Sequence[float]) -> str:
    """``vector`` in pgvector's text form (``[0.1,0.2]``); float32 values survive it exactly."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def read_vectors(
    conn: Connection, wanted: Iterable[tuple[str, str, str]], *, park_missing: bool = True
) -> dict[str, str]:
    """The pgvector text of each ``(user id, memory id, vector hash)``'s vector, by hash, from the
    blob store (a user's vectors are sealed with their key). A forgotten user's are left out, and
    without ``park_missing`` so are those the blob store does not hold.

    :raises VectorBlobMissing: with ``park_missing``, a vector of a user not forgotten is not in
        the blob store.
    """
    by_user: dict[str, dict[str, str]] = {}
    for user_id, memory_id, sha in wanted:
        by_user.setdefault(user_id, {}).setdefault(sha, memory_id)
    blobs, found = user_blobs(conn), dict[str, bytes]()
    for user_id in sorted(by_user):
        try:
            mine = await blobs.get_many(sorted(by_user[user_id]), user_id=user_id)
        except DataErased:  # a forgotten user's memory: no vector (its rows go at UserForgotten)
            continue
        for sha, memory_id in sorted(by_user[user_id].items()):
            if sha not in mine and park_missing:
                raise VectorBlobMissing(memory_id, sha)
        found.update(mine)
    return {sha: vector_literal(bytes_to_vector(data)) for sha, data in found.items()}


@dataclass(frozen=True)
class _Serve:
    user_id: str
    space: VectorSpace
    request_id: str | None
    position: int

    def rank(self) -> tuple[bool, int]:
        """Higher wins: a switch over a first vector, a later switch, an earlier first vector."""
        return (self.request_id is not None, self.position if self.request_id else -self.position)


async def _serve(conn: Connection, tables: Tables, candidates: Iterable[_Serve]) -> None:
    best: dict[str, _Serve] = {}
    for c in candidates:  # one row per user per statement (ON CONFLICT touches a row once)
        if c.user_id not in best or c.rank() > best[c.user_id].rank():
            best[c.user_id] = c
    if not best:
        return
    rows = [best[u] for u in sorted(best)]
    await conn.execute(
        _SERVE.format(**tables),
        [r.user_id for r in rows],
        [r.space.embedder for r in rows],
        [r.space.dimension for r in rows],
        [r.request_id for r in rows],
        [r.position for r in rows],
    )


async def serve_first_vectors(
    conn: Connection, tables: Tables, created: Iterable[tuple[str, VectorSpace, int]]
) -> None:
    """Each ``(user id, space, position)`` of a vector stored at its memory's creation: the user's
    default space, if it is their first."""
    await _serve(conn, tables, (_Serve(u, s, None, p) for u, s, p in created))


async def on_episodes_reextracted(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """The new model's vectors of the memories each re-extraction left unchanged, into
    ``memory_vectors``. A vector whose blob is missing is left out rather than parked: its memory
    keeps its other vectors and its words, and the decision's memory changes are events of their own."""
    decided = [(event, payload_of(event, EpisodeReextracted)) for event in events if event.user_id]
    entries = [(event, p.embedder, v) for event, p in decided for v in p.vectors]
    if not entries:
        return
    vectors = await read_vectors(
        conn, ((e.user_id or "", v.memory_id, v.vector_sha256) for e, _, v in entries), park_missing=False
    )
    rows = [
        (v.memory_id, e.user_id, name, v.dimension, vectors[v.vector_sha256], e.position)
        for e, name, v in entries
        if v.vector_sha256 in vectors
    ]
    best: dict[tuple[str, str, int], tuple[object, ...]] = {}
    for row in sorted(rows, key=lambda r: r[5]):  # of one memory and space, the later event's
        best[(row[0], row[2], row[3])] = row
    if best:
        columns = list(zip(*best.values(), strict=True))
        await conn.execute(_VECTORS.format(**tables), *(list(c) for c in columns))


async def on_episode_reextracted(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_episodes_reextracted` for one event."""
    await on_episodes_reextracted(conn, tables, [event])


async def on_reextractions_completed(
    conn: Connection, tables: Tables, events: Sequence[RecordedEvent]
) -> None:
    """A complete re-extraction (no episode failed) switches its scope to its model."""
    candidates = []
    for event in events:
        p = payload_of(event, ReextractionCompleted)
        if not p.failed:
            scope = p.user_id if p.scope == "user" and p.user_id else EVERY_USER
            candidates.append(
                _Serve(scope, VectorSpace(p.embedder_name, p.dimension), p.request_id, event.position)
            )
    await _serve(conn, tables, candidates)


async def on_reextraction_completed(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_reextractions_completed` for one event."""
    await on_reextractions_completed(conn, tables, [event])


async def serving_space(db: Executor, views: Tables, user_id: str) -> VectorSpace | None:
    """The space ``user_id``'s queries are embedded in and compared with; None: the user has no
    vector. Read by the projector's login (``db``): the switch of every user is no user's row.

    :raises asyncpg.UndefinedTableError: the read model was never built.
    """
    row: asyncpg.Record | None = await db.fetchrow(_SERVING.format(**views), user_id)
    return None if row is None else VectorSpace(row["embedder"], row["dimension"])
