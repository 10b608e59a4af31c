"""Recall: search a user's memories by meaning and by words, optionally after one's own writes.

The question is embedded here (never in the projection) in the vector space the read model
serves the user in (:func:`projections.search_models.serving_space`: the model of a complete
re-extraction, else of the user's first vector), whatever ``MEMSAGA_EMBEDDER`` says now;
:func:`projections.search` does the ranking, comparing it with vectors of that space only. With
``after_position`` (the ``last_position`` of an extraction's result) the search first waits
until the ``memory_search`` read model has applied that position: read-your-writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

import asyncpg
from pydantic import BaseModel, ConfigDict

from eventstore import PostgresEventStore
from memsaga.bootstrap import adapter_config, build_search_embedder, build_stores, create_pool
from memsaga.errors import MemsagaError
from memsaga.query_embedders import QueryEmbedders
from memsaga.read_connection import read_pool
from memsaga.settings import Settings
from memsaga.trace import workflow_url
from projections import MEMORY_SEARCH, SearchMode, SearchQuery, search
from projections import SearchHit as SearchHit
from projections.consistency import applied_position, has_applied
from projections.own_name import about_the_user, own_names
from projections.row_security import as_user
from projections.search_models import VectorSpace, serving_space
from sagas.memory_extraction.embedders import Embedder
from sagas.memory_extraction.events import MemoryKind
from sagas.memory_extraction.identifiers import identifier_problem

MAX_QUERY_CHARS = 2000
MAX_K = 100
KINDS: tuple[str, ...] = get_args(MemoryKind)


class InvalidSearch(MemsagaError):
    """A search that cannot be run as asked; the message says what to change."""


class NotYetApplied(MemsagaError):
    """The search read model did not reach the asked position in time."""

    def __init__(self, position: int, reached: int | None, timeout: float) -> None:
        self.position = position
        self.reached = reached
        where = "has not been built yet" if reached is None else f"has applied up to position {reached:,}"
        super().__init__(
            f"the memory_search read model {where}, not {position:,}, after {timeout:g}s: is"
            " `memsaga project run` running? (`memsaga project status` shows its lag)"
        )


class SearchResult(BaseModel):
    """The hits of one search, best first, and how they were found."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    query: str
    k: int
    mode: str
    embedder: str
    hits: list[SearchHit]
    searched_as: str = ""
    """The question as it was ranked: ``query`` with the user's own name as "the user"."""


def check_search(query: str, *, user_id: str, k: int, kinds: Sequence[str]) -> str:
    """The query, stripped. :raises InvalidSearch: what is wrong and how to fix it."""
    text = query.strip()
    if not user_id.strip():
        raise InvalidSearch("a search needs a user id: pass --user")
    if problem := identifier_problem(user_id, "the user id"):
        raise InvalidSearch(problem)
    if not text:
        raise InvalidSearch('the query is empty: ask a question, e.g. "where does the user live?"')
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(
            f"the query has {len(text):,} characters; at most {MAX_QUERY_CHARS:,} are searched"
        )
    if "\x00" in text:
        raise InvalidSearch("the query contains a NUL character: remove it")
    if not 1 <= k <= MAX_K:
        raise InvalidSearch(f"k must be between 1 and {MAX_K}, not {k}")
    if unknown := sorted(set(kinds) - set(KINDS)):
        raise InvalidSearch(f"unknown kind {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    return text


async def wait_until_applied(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    position: int,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    user_id: str | None = None,
) -> None:
    """Return once the memory_search read model has applied ``position`` (every event of
    ``user_id`` up to it, when given: all a search as that user can see). :raises NotYetApplied:"""
    deadline = time.monotonic() + timeout
    while not await has_applied(pool, store, MEMORY_SEARCH, position, user_id=user_id):
        if time.monotonic() >= deadline:
            raise NotYetApplied(position, await applied_position(pool, MEMORY_SEARCH), timeout)
        await asyncio.sleep(interval)


async def search_memories(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    embedder: Embedder,
    query: str,
    *,
    user_id: str,
    k: int = 10,
    kinds: Sequence[str] = (),
    valid_at: datetime | None = None,
    mode: SearchMode = SearchMode.HYBRID,
    query_vector: Sequence[float] | None = None,
    after_position: int | None = None,
    timeout: float = 10.0,
    temporal_ui: str | None = None,
    namespace: str = "default",
    reader: asyncpg.Pool | None = None,
    embedders: QueryEmbedders | None = None,
) -> SearchResult:
    """The ``k`` memories of ``user_id`` that best answer ``query``, best first.

    Current memories only, or with ``valid_at`` those true in the world then (superseded and
    invalidated ones too; retracted ones never). The query is embedded in the space that serves
    the user (``embedder`` when it is that space's, else one of ``embedders``, which by default
    builds offline models only); ``query_vector`` replaces embedding it (it must be of that
    space's dimension; of ``embedder``'s when the user has no vector).
    ``temporal_ui`` (the UI's base URL) adds a link to each hit's saga. The search runs on
    ``reader`` (default ``pool``), as ``user_id`` only (:func:`projections.row_security.as_user`);
    waiting for ``after_position`` reads checkpoints on ``pool``.

    :raises InvalidSearch: bad input (nothing is searched).
    :raises NotYetApplied: ``after_position`` was not reached within ``timeout`` seconds.
    :raises ProjectionNotInitialized: the memory_search projection never ran.
    :raises ServingEmbedderUnavailable: the user's space has a model this process cannot build.
    """
    text = check_search(query, user_id=user_id, k=k, kinds=kinds)
    if valid_at is not None and valid_at.tzinfo is None:
        raise InvalidSearch("valid_at needs a time zone, e.g. 2026-05-01T00:00:00Z")
    if after_position is not None:
        await wait_until_applied(pool, store, after_position, timeout=timeout, user_id=user_id)
    async with as_user(reader or pool, user_id) as conn:
        asked = about_the_user(text, await own_names(conn, user_id))
    space, other_vectors = await _serving(pool, user_id)
    name, vector = embedder.name, None
    if mode != SearchMode.KEYWORD:
        name, vector = await _query_vector(
            asked, user_id, space, embedders or QueryEmbedders(embedder), query_vector
        )
    elif space is not None:
        name = space.embedder
    rows = await search(
        reader or pool,
        SearchQuery(
            user_id=user_id,
            text=asked,
            vector=vector,
            embedder=name,
            k=k,
            kinds=tuple(kinds),
            valid_at=valid_at,
            mode=mode,
            candidates=max(50, 4 * k),
            other_vectors=other_vectors,
        ),
    )
    hits = [
        hit.model_copy(
            update={
                "score": round(hit.score, 6),
                "similarity": None if hit.similarity is None else round(hit.similarity, 6),
                "keyword_rank": None if hit.keyword_rank is None else round(hit.keyword_rank, 6),
                "workflow_url": (
                    workflow_url(temporal_ui, namespace, hit.workflow_id)
                    if temporal_ui and hit.workflow_id
                    else None
                ),
            }
        )
        for hit in rows
    ]
    return SearchResult(
        user_id=user_id, query=text, k=k, mode=mode.value, embedder=name, hits=hits, searched_as=asked
    )


async def _serving(pool: asyncpg.Pool, user_id: str) -> tuple[VectorSpace | None, bool]:
    """The user's serving space, and whether the live read model keeps re-extraction vectors.

    A live version older than 5 (version 5 being built beside it) has neither: the question is then
    embedded with the configured embedder, as that code did, until the switch.
    """
    try:
        return await serving_space(pool, MEMORY_SEARCH.views(), user_id), True
    except asyncpg.UndefinedTableError:
        return None, False


async def _query_vector(
    text: str,
    user_id: str,
    space: VectorSpace | None,
    embedders: QueryEmbedders,
    given: Sequence[float] | None,
) -> tuple[str, Sequence[float] | None]:
    """The space's embedder name and the query's vector in it. Without a space (a user with no
    vector yet, or a live read model older than version 5) the configured embedder's.

    :raises InvalidSearch: ``given`` has another dimension than the space's.
    """
    configured = embedders.configured
    if space is None:
        name, dimension = configured.name, configured.dimension
    else:
        name, dimension = space.embedder, space.dimension
    if given is not None and len(given) != dimension:
        raise InvalidSearch(
            f"the query vector has {len(given)} dimensions, but {name} vectors have"
            f" {dimension}: embed the query with {name}"
        )
    if given is not None:
        return name, given
    embedder = configured if space is None else embedders.for_space(space, user_id=user_id)
    return name, (await embedder.embed([text]))[0]


@dataclass
class Recall:
    """Search from Python with one pool and one embedder for many queries.

    Example (inside ``asyncio.run``, or ``python -m asyncio`` for a prompt that takes ``await``)::

        from memsaga.client import Recall
        from memsaga.settings import Settings

        async with Recall.open(Settings()) as recall:
            result = await recall.search("where does the user live?", user_id="u-1")
            for hit in result.hits:
                print(hit.score, hit.text, hit.workflow_url)
    """

    pool: asyncpg.Pool
    store: PostgresEventStore
    embedder: Embedder
    settings: Settings
    reader: asyncpg.Pool | None = None
    """Where searches run (``MEMSAGA_READ_DATABASE_URL``'s pool); None: ``pool``."""
    embedders: QueryEmbedders | None = None
    """Embedders of the spaces users are served in; None: ``embedder``, or offline models."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Recall]:
        """Connect to PostgreSQL (and to ``MEMSAGA_READ_DATABASE_URL`` when set) and build the
        configured embedder; close the pools after.

        :raises DatabaseUnreachable: PostgreSQL cannot be reached.
        :raises AdapterError: the configured embedder cannot be built.
        """
        embedder = build_search_embedder(settings)
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            store, _ = build_stores(pool, settings)
            async with read_pool(settings, pool) as reader:
                yield cls(
                    pool,
                    store,
                    embedder,
                    settings,
                    None if reader is pool else reader,
                    QueryEmbedders(embedder, adapter_config(settings)),
                )
        finally:
            await pool.close()

    async def search(
        self,
        query: str,
        *,
        user_id: str,
        k: int = 10,
        kinds: Sequence[str] = (),
        valid_at: datetime | None = None,
        mode: SearchMode = SearchMode.HYBRID,
        query_vector: Sequence[float] | None = None,
        after_position: int | None = None,
        timeout: float = 10.0,
    ) -> SearchResult:
        """:func:`search_memories` with this pool, embedder and the settings' Temporal UI."""
        return await search_memories(
            self.pool,
            self.store,
            self.embedder,
            query,
            user_id=user_id,
            k=k,
            kinds=kinds,
            valid_at=valid_at,
            mode=mode,
            query_vector=query_vector,
            after_position=after_position,
            timeout=timeout,
            temporal_ui=self.settings.temporal_ui(),
            namespace=self.settings.temporal_namespace,
            reader=self.reader,
            embedders=self.embedders,
        )
