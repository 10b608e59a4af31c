"""The ``memory_search`` read model: each user's memories, searchable by meaning and by words.

One row per memory id, with its lifecycle status and world-time validity, disorder-safe like
``memories``: ``MemoryCreated`` fills the row whenever it arrives (never its state); the
state (current, superseded, invalidated, retracted, ``valid_to``) is the fold of the memory's
lifecycle rows present (:mod:`projections.memory_lifecycle`, a narrow table of its own), so any
delivery order ends as the stream in order. Superseded and invalidated memories stay, for
searches ``valid_at`` a moment; a default search sees current ones only. A retraction clears
the text and the vector and leaves a tombstone (so a late ``MemoryCreated`` cannot bring the
memory back).

Vectors are never computed here: the handler reads the bytes the saga stored in the blob
store under the event's ``vector_sha256`` (the same bytes on every rebuild) and keeps them in
a pgvector column beside the name of the embedder that made them. Each known vector space
(embedder and dimension) has its own HNSW index (cosine), so vectors of different models are
never compared; ``tsv`` (PostgreSQL full-text, English) has a GIN index. Vectors a
re-extraction made with another model, and which model serves each user, are kept beside
(:mod:`projections.search_models`). :func:`search` fuses the two rankings by reciprocal rank
fusion, always filtered by user, comparing the query only with vectors of its own space.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict

from eventstore import EventPayload, RecordedEvent
from eventstore.postgres import Connection
from projections.base import BatchHandler, Handler, Projection, Tables, payload_of
from projections.errors import ProjectionNotInitialized
from projections.memory_lifecycle import LIFECYCLE_TYPES, created_row, lifecycle_ddl, refold, states_update
from projections.row_security import as_user
from projections.sealed import forgetting_handler
from projections.search_models import DDL as MODELS_DDL
from projections.search_models import (
    FORGET_VECTORS,
    INDEXED_SPACES,
    VectorSpace,
    on_episode_reextracted,
    on_episodes_reextracted,
    on_reextraction_completed,
    on_reextractions_completed,
    read_vectors,
    serve_first_vectors,
    space_indexes,
    vector_literal,
)
from projections.search_models import VectorBlobMissing as VectorBlobMissing  # parked by on_memories_created
from sagas.forgetting import UserForgotten
from sagas.memory_extraction.events import MemoryCreated
from sagas.memory_extraction.lifecycle import MemoryStatus
from sagas.reextraction import EpisodeReextracted, ReextractionCompleted

RRF_K = 60
"""The constant of reciprocal rank fusion: a hit at rank r of one ranking scores 1 / (RRF_K + r)."""

TEXT_SEARCH_CONFIG = "english"

_SPACE_INDEXES = space_indexes("memory_search")

DDL = f"""
CREATE TABLE {{memory_search}} (
    memory_id          text        PRIMARY KEY,
    user_id            text        NOT NULL,
    text               text,
    kind               text,
    embedder           text,
    dimension          integer,
    embedding          vector,
    episode_id         text,
    correlation_id     text,
    workflow_id        text,
    created_at         timestamptz,
    valid_from         timestamptz,
    valid_to           timestamptz,
    version            bigint      NOT NULL,
    status             text        NOT NULL DEFAULT 'current'
);
CREATE INDEX ON {{memory_search}} (user_id) WHERE status <> 'retracted';
{_SPACE_INDEXES}
-- The words of memories not retracted, in narrow rows: the keyword ranking reads every row that
-- matches a word of the question, and rows that carry a 1 KB vector cost ten times as many pages.
CREATE TABLE {{memory_words}} (
    memory_id          text        PRIMARY KEY,
    user_id            text        NOT NULL,
    kind               text,
    status             text        NOT NULL,
    valid_from         timestamptz,
    valid_to           timestamptz,
    tsv                tsvector    NOT NULL
);
CREATE INDEX ON {{memory_words}} USING gin (tsv);
CREATE INDEX ON {{memory_words}} (user_id);
{lifecycle_ddl("memory_search_lifecycle")}
{MODELS_DDL}"""

_CREATED = """INSERT INTO {memory_search} AS m (memory_id, user_id, text, kind, embedder, dimension,
        embedding, episode_id, correlation_id, workflow_id, created_at, valid_from, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7::vector, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (memory_id) DO UPDATE SET
        user_id = EXCLUDED.user_id, text = EXCLUDED.text, kind = EXCLUDED.kind,
        embedder = EXCLUDED.embedder, dimension = EXCLUDED.dimension, embedding = EXCLUDED.embedding,
        episode_id = EXCLUDED.episode_id, correlation_id = EXCLUDED.correlation_id,
        workflow_id = EXCLUDED.workflow_id, created_at = EXCLUDED.created_at,
        valid_from = EXCLUDED.valid_from, version = greatest(m.version, EXCLUDED.version)
    WHERE m.status <> 'retracted'"""

# A creation and its lifecycle row, in one statement.
_CREATED_AND_ROW = (
    "WITH created AS ("
    + _CREATED
    + ") "
    + created_row(
        "{memory_search_lifecycle}", memory_id="$1", version="$13", user_id="$2", event_id="$14",
        recorded_at="$15", occurred_at="$11",
    )
)  # fmt: skip

# The words of memories created and not retracted (a tombstone keeps a late creation out):
# those listed in $1, or every one when $1 is NULL.
_WORDS = f"""INSERT INTO {{memory_words}} AS w (memory_id, user_id, kind, status, valid_from, valid_to, tsv)
    SELECT memory_id, user_id, kind, status, valid_from, valid_to, to_tsvector('{TEXT_SEARCH_CONFIG}', text)
    FROM {{memory_search}} WHERE ($1::text[] IS NULL OR memory_id = ANY($1::text[]))
        AND status <> 'retracted' AND text IS NOT NULL
    ON CONFLICT (memory_id) DO UPDATE SET user_id = EXCLUDED.user_id, kind = EXCLUDED.kind,
        status = EXCLUDED.status, valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to,
        tsv = EXCLUDED.tsv"""

_FORGET_WORDS = "DELETE FROM {memory_words} WHERE memory_id = ANY($1::text[])"

# The fold of the memory's lifecycle rows is its state (the rows get theirs in the same
# statement); a retraction clears text and vector.
_STATE = """WITH states AS ({states})
    INSERT INTO {memory_search} AS m (memory_id, user_id, version, status, valid_to)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[])
    ON CONFLICT (memory_id) DO UPDATE SET
        version = greatest(m.version, EXCLUDED.version), status = EXCLUDED.status,
        valid_to = EXCLUDED.valid_to,
        text = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.text END,
        kind = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.kind END,
        embedding = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.embedding END,
        embedder = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.embedder END,
        dimension = CASE WHEN EXCLUDED.status = 'retracted' THEN NULL ELSE m.dimension END"""


async def _vectors(conn: Connection, events: Sequence[MemoryCreated]) -> dict[str, str]:
    """The pgvector text of each event's vector, by hash (:func:`read_vectors`)."""
    return await read_vectors(
        conn, ((e.user_id, e.memory_id, e.vector_sha256) for e in events if e.vector_sha256 and e.embedder)
    )


def _created_args(event: RecordedEvent, p: MemoryCreated, vectors: dict[str, str]) -> tuple[object, ...]:
    vector = vectors.get(p.vector_sha256) if p.vector_sha256 and p.embedder else None
    return (
        p.memory_id,
        p.user_id,
        p.text,
        p.kind,
        p.embedder if vector else None,
        p.dimension if vector else None,
        vector,
        p.episode_id,
        event.correlation_id,
        event.metadata.get("workflow_id"),
        event.occurred_at,
        p.valid_from or event.occurred_at,
        event.version,
        event.event_id,
        event.recorded_at,
    )


async def on_memories_created(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Insert or complete each memory's row, with its vector read from the blob store."""
    payloads = [payload_of(e, MemoryCreated) for e in events]
    vectors = await _vectors(conn, payloads)
    rows = [_created_args(e, p, vectors) for e, p in zip(events, payloads, strict=True)]
    await conn.executemany(_CREATED_AND_ROW.format(**tables), rows)
    await serve_first_vectors(
        conn,
        tables,
        (
            (p.user_id, VectorSpace(p.embedder, p.dimension), e.position)
            for e, p in zip(events, payloads, strict=True)
            if p.embedder and p.dimension and p.vector_sha256 in vectors
        ),
    )
    if late := [e for e in events if e.version != 1]:  # not written by the saga; folded to be safe
        await _refold(conn, tables, late)
    await conn.execute(_WORDS.format(**tables), [p.memory_id for p in payloads])


async def copy_words(conn: Connection, tables: Tables) -> None:
    """Fill ``memory_words`` from every current row of ``memory_search`` (rows loaded in bulk)."""
    await conn.execute(_WORDS.format(**tables), None)


async def on_memory_created(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_memories_created` for one event."""
    await on_memories_created(conn, tables, [event])


async def _refold(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Fold each memory the events touch again and write its status and ``valid_to`` (a tombstone
    row when it is not created yet); the words follow: kept (with the new state) unless retracted."""
    found = await refold(conn, tables["memory_search_lifecycle"], events)
    if not found.folded:
        return
    columns = zip(
        *((f.memory_id, f.user_id, f.version, f.standing.status, f.standing.valid_to) for f in found.folded),
        strict=True,
    )
    sql = _STATE.format(
        memory_search=tables["memory_search"], states=states_update(tables["memory_search_lifecycle"], 6)
    )
    await conn.execute(sql, *(list(c) for c in columns), *found.row_states)
    gone = [f.memory_id for f in found.folded if f.standing.status == "retracted"]
    kept = [f.memory_id for f in found.folded if f.standing.status != "retracted"]
    if gone:
        await conn.execute(_FORGET_WORDS.format(**tables), gone)
        await conn.execute(FORGET_VECTORS.format(**tables), gone)
    if kept:
        await conn.execute(_WORDS.format(**tables), kept)


async def on_lifecycle_events(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """Superseded, invalidated, reinstated or retracted: fold each touched memory again and write
    its state; a retracted memory's text, vector and words go."""
    await _refold(conn, tables, events)


async def on_lifecycle_event(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`on_lifecycle_events` for one event."""
    await on_lifecycle_events(conn, tables, [event])


# Kept for callers of version 2's names: a retraction is one lifecycle event among others.
on_memories_retracted = on_lifecycle_events
on_memory_retracted = on_lifecycle_event

_CHANGES = LIFECYCLE_TYPES[1:]  # every lifecycle type but MemoryCreated

_HANDLERS: dict[type[EventPayload], Handler] = {
    MemoryCreated: on_memory_created,
    **dict.fromkeys(_CHANGES, on_lifecycle_event),
    EpisodeReextracted: on_episode_reextracted,
    ReextractionCompleted: on_reextraction_completed,
    UserForgotten: forgetting_handler(
        "memory_search_serving", "memory_vectors", "memory_search_lifecycle", "memory_words", "memory_search"
    ),
}
_BATCH_HANDLERS: dict[type[EventPayload], BatchHandler] = {
    MemoryCreated: on_memories_created,
    **dict.fromkeys(_CHANGES, on_lifecycle_events),
    EpisodeReextracted: on_episodes_reextracted,
    ReextractionCompleted: on_reextractions_completed,
}

MEMORY_SEARCH = Projection.declare(
    "memory_search",
    version=5,
    tables=(
        "memory_search",
        "memory_words",
        "memory_search_lifecycle",
        "memory_vectors",
        "memory_search_serving",
    ),
    ddl=DDL,
    handlers=_HANDLERS,
    batch_handlers=_BATCH_HANDLERS,
    extensions=("vector",),
    description="each user's memories (current by default, or valid at a moment), by vector"
    " (pgvector HNSW) and full text",
)


# --- Queries ------------------------------------------------------------------------------------


class SearchMode(enum.Enum):
    """Which rankings a search uses: both fused (the default), or one alone (for comparison)."""

    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True, kw_only=True)
class SearchQuery:
    """One search: always one user's memories; the vector is the query's, in ``embedder``'s space."""

    user_id: str
    text: str
    vector: Sequence[float] | None
    embedder: str
    k: int = 10
    kinds: tuple[str, ...] = ()
    valid_at: datetime | None = None
    mode: SearchMode = SearchMode.HYBRID
    candidates: int = 50  # how deep each ranking goes before fusion
    ef_search: int = 100
    other_vectors: bool = True
    """Also compare with re-extraction vectors (``memory_vectors``); False for a live read model
    built by code older than version 5, which has none (while version 5 is built beside it)."""


class SearchHit(BaseModel):
    """One recalled memory: its scores and where it came from (``score``: the fused score, or the
    one ranking's ``1/(RRF_K + rank)``; ``workflow_url`` is filled by callers that know the UI)."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    user_id: str
    text: str
    kind: str
    score: float
    similarity: float | None
    keyword_rank: float | None
    created_at: datetime
    valid_from: datetime | None
    valid_to: datetime | None
    episode_id: str | None
    correlation_id: str | None
    workflow_id: str | None
    embedder: str | None
    workflow_url: str | None = None
    status: MemoryStatus = "current"
    """``current``, or for a search ``valid_at`` a moment, ``superseded`` / ``invalidated`` too."""


# Every parameter, typed once (rankings left out of a mode would leave some untyped):
# $1 user, $2 kinds (NULL = any), $3 valid-at (NULL = any time), $4 question, $5 query vector,
# $6 embedder, $7 dimension, $8 depth of each ranking, $9 hits.
_PARAMETERS = """SELECT $1::text, $2::text[], $3::timestamptz, $4::text, $5::vector, $6::text, $7::int,
        $8::int, $9::int"""

# Without a valid-at moment: current memories; with one: those valid then, whatever their status.
_WORD_FILTERS = """user_id = $1
      AND ($2::text[] IS NULL OR kind = ANY($2::text[]))
      AND CASE WHEN $3::timestamptz IS NULL THEN status = 'current'
               ELSE valid_from <= $3 AND (valid_to IS NULL OR valid_to > $3) END"""
_FILTERS = f"{_WORD_FILTERS} AND status <> 'retracted'"

# The question's stemmed lexemes; stop words and "user" (every memory starts with it) drop out.
_LEXEMES = f"""(SELECT coalesce(array_agg(lexeme), ARRAY[]::text[])
        FROM unnest(tsvector_to_array(to_tsvector('{TEXT_SEARCH_CONFIG}', $4::text))) AS lexeme
        WHERE lexeme <> 'user')"""

# Any word of the question may match (an OR of its lexemes).
_TSQUERY = (
    """(SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery FROM unnest(query.lexemes) AS lexeme)"""
)

MINIMUM_SHOULD_MATCH = 0.5
"""In a hybrid search, a memory's words count only when they cover at least this share of the
question's lexemes (Elasticsearch's ``minimum_should_match``): one common word in common
("working" ~ "works as a nurse") does not outvote the meaning; the keyword mode alone keeps any."""


def _vector_ranking(space: tuple[str, int] | None, other_vectors: bool = True) -> str:
    """Nearest memories by cosine distance, among the vectors of the query's space only: those of
    their creation (``memory_search``) and those a re-extraction made (``memory_vectors``, whose
    memory must pass the filters); a memory in both counts once, at its nearer vector. A known
    space is written out, so its partial HNSW indexes apply."""
    if space is not None:
        name, dim = space
        distance = f"embedding::vector({dim}) <=> $5::vector({dim})"
        where = f"embedder = '{name}' AND dimension = {dim}"
    else:
        distance = "embedding <=> $5::vector"
        where = "embedder = $6 AND dimension = $7"
    others = f"""
              UNION ALL
              (SELECT memory_id, {distance} AS dist FROM {{v}} AS v
               WHERE user_id = $1 AND {where} AND $5::vector IS NOT NULL
                 AND EXISTS (SELECT 1 FROM {{t}} AS m WHERE m.memory_id = v.memory_id AND {_FILTERS})
               ORDER BY dist LIMIT $8)"""
    return f"""SELECT memory_id, row_number() OVER (ORDER BY d, memory_id) AS r, 1 - d AS similarity
        FROM (SELECT memory_id, min(dist) AS d FROM (
              (SELECT memory_id, {distance} AS dist FROM {{t}}
               WHERE {_FILTERS} AND {where} AND $5::vector IS NOT NULL
               ORDER BY dist LIMIT $8){others if other_vectors else ""}) AS both_sources
              GROUP BY memory_id ORDER BY min(dist), memory_id LIMIT $8) AS nearest"""


def _keyword_ranking(minimum_share: float) -> str:
    """Memories whose words match the question's, by ``ts_rank``; with a ``minimum_share`` above
    0, only those matching at least that share of the question's lexemes."""
    covers = (
        f"""
                AND length(tsv) - length(ts_delete(tsv, query.lexemes))
                    >= {minimum_share} * cardinality(query.lexemes)"""
        if minimum_share > 0
        else ""
    )
    return f"""SELECT memory_id, row_number() OVER (ORDER BY rank DESC, memory_id) AS r, rank
        FROM (SELECT memory_id, ts_rank(tsv, query.q) AS rank
              FROM {{w}},
                   (SELECT lexemes, {_TSQUERY} AS q FROM (SELECT {_LEXEMES} AS lexemes) AS query) AS query
              WHERE {_WORD_FILTERS} AND query.q IS NOT NULL AND tsv @@ query.q{covers}
              ORDER BY rank DESC, memory_id LIMIT $8) AS matched"""


_EMPTY = "SELECT NULL::text AS memory_id, NULL::bigint AS r, NULL::float8 AS {column} WHERE false"


def _search_sql(mode: SearchMode, space: tuple[str, int] | None, other_vectors: bool = True) -> str:
    vec = (
        _vector_ranking(space, other_vectors)
        if mode != SearchMode.KEYWORD
        else _EMPTY.format(column="similarity")
    )
    if mode == SearchMode.VECTOR:
        kw = _EMPTY.format(column="rank")
    else:
        kw = _keyword_ranking(MINIMUM_SHOULD_MATCH if mode == SearchMode.HYBRID else 0.0)
    # The fused hits are materialized before the join: joined on the FULL JOIN's merged column (a
    # COALESCE, which PostgreSQL does not hold leakproof), rows under row-level security could only
    # be read by a scan of every row; on a plain column, by the primary key, one row per hit.
    return f"""WITH parameters AS ({_PARAMETERS}), vec AS MATERIALIZED ({vec}), kw AS MATERIALIZED ({kw}),
        fused AS MATERIALIZED (
            SELECT memory_id, vec.similarity, kw.rank::float8 AS keyword_rank,
                (coalesce(1.0 / ({RRF_K} + vec.r), 0) + coalesce(1.0 / ({RRF_K} + kw.r), 0))::float8 AS score
            FROM vec FULL JOIN kw USING (memory_id))
        SELECT m.memory_id, m.user_id, m.text, m.kind, m.status, m.created_at, m.valid_from, m.valid_to,
               m.episode_id, m.correlation_id, m.workflow_id, m.embedder,
               f.score, f.similarity, f.keyword_rank
        FROM fused f JOIN {{t}} m ON m.memory_id = f.memory_id
        WHERE m.user_id = $1
        ORDER BY f.score DESC, m.memory_id LIMIT $9"""


def _space(embedder: str, dimension: int) -> tuple[str, int] | None:
    return (embedder, dimension) if (embedder, dimension) in INDEXED_SPACES else None


def _statement(query: SearchQuery) -> tuple[str, tuple[object, ...]]:
    """The SQL of ``query`` and its arguments."""
    dimension = len(query.vector) if query.vector is not None else 0
    views = MEMORY_SEARCH.views()
    sql = _search_sql(query.mode, _space(query.embedder, dimension), query.other_vectors).format(
        t=views["memory_search"], w=views["memory_words"], v=views["memory_vectors"]
    )
    vector = vector_literal(query.vector) if query.vector is not None else None
    args = (
        query.user_id,
        list(query.kinds) or None,
        query.valid_at,
        query.text,
        vector,
        query.embedder,
        dimension,
        query.candidates,
        query.k,
    )
    return sql, args


async def _prepare_scan(conn: Connection, query: SearchQuery) -> None:
    # Filtered HNSW scans go on until they have enough rows (pgvector 0.8).
    await conn.execute(f"SET LOCAL hnsw.ef_search = {int(query.ef_search)}")
    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")


async def search(pool: asyncpg.Pool, query: SearchQuery) -> list[SearchHit]:
    """The ``k`` best memories of ``query.user_id`` for ``query``, best first: current ones, or
    with ``query.valid_at`` those valid then (superseded and invalidated ones too, never retracted).
    Read as that user (:func:`projections.row_security.as_user`): no other user's row can match.

    :raises ProjectionNotInitialized: the memory_search projection never ran.
    :raises ReaderRoleUnavailable: the pool's login cannot switch to the read role.
    """
    sql, args = _statement(query)
    async with _reading(pool, query) as conn:
        rows = await conn.fetch(sql, *args)
    return [SearchHit(**dict(r)) for r in rows]


@contextlib.asynccontextmanager
async def _reading(pool: asyncpg.Pool, query: SearchQuery) -> AsyncIterator[Connection]:
    """A connection reading as ``query``'s user, set up for the vector scan.

    :raises ProjectionNotInitialized: no ``memory_search`` table, or not even pgvector's
        ``vector`` type (the projection's first run creates the extension).
    """
    try:
        async with as_user(pool, query.user_id) as conn:
            await _prepare_scan(conn, query)
            yield conn
    except asyncpg.UndefinedTableError:
        raise ProjectionNotInitialized(MEMORY_SEARCH.name) from None
    except asyncpg.UndefinedObjectError as exc:
        if 'type "vector" does not exist' not in str(exc):
            raise
        raise ProjectionNotInitialized(MEMORY_SEARCH.name) from None


async def explain_search(pool: asyncpg.Pool, query: SearchQuery, *, analyze: bool = False) -> object:
    """PostgreSQL's plan of :func:`search` for ``query`` (``EXPLAIN (FORMAT JSON)``), as JSON.

    :raises ProjectionNotInitialized: the memory_search projection never ran.
    """
    sql, args = _statement(query)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    async with _reading(pool, query) as conn:
        plan = await conn.fetchval(f"EXPLAIN ({options}) {sql}", *args)
    return json.loads(plan) if isinstance(plan, str) else plan
