"""Recall quality: recall@1, recall@5 and MRR of each search mode on the two retrieval fixtures.

Every memory the rule-based extractor makes of a fixture's episodes is written as the saga
writes it (its vector in the blob store, a ``MemoryCreated`` in its own stream), once per
embedder in a database of its own (a memory has one vector); ``rebuild`` builds
``memory_search`` and ``memories`` from the events, and each question runs as
:func:`memsaga.search.search_memories` runs it (the user's own name read as "the user",
:mod:`projections.own_name`) through :func:`projections.search` in each mode (k = 50: the whole
ranking of a fixture user). Figures compare hybrid (wordllama + keyword) with each ranking
alone, and wordllama with hashing, on the first set (``recall.quality.*``) and on the held-out
second set (``recall.quality.heldout.*``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.wordllama_embedder import WordLlamaEmbedder
from bench.context import BenchContext
from bench.recall_fixture import (
    FIXTURE_PATH,
    HELDOUT_PATH,
    FixtureMemory,
    QualityReport,
    RecallFixture,
    fixture_memories,
    load_fixture,
    quality,
)
from bench.results_model import Figure, Measurement, Target
from eventstore import NO_STREAM, NewEvent, PostgresBlobStore, PostgresEventStore
from projections import MEMORIES, MEMORY_SEARCH, SearchMode, SearchQuery, rebuild, search
from projections.own_name import about_the_user, own_names
from projections.row_security import as_user
from sagas.memory_extraction.embedders import Embedder, HashingEmbedder, vector_to_bytes
from sagas.memory_extraction.events import MemoryCreated
from sagas.memory_extraction.extractors import RuleBasedExtractor

DEPTH = 50
RECALL_AT_5_TARGET = 0.9
_CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
METRICS = (("recall_at_1", "recall@1"), ("recall_at_5", "recall@5"), ("mrr", "MRR"))


async def remember_all(
    store: PostgresEventStore, memories: Sequence[FixtureMemory], embedder: Embedder
) -> None:
    """Append a ``MemoryCreated`` per memory, its vector by ``embedder`` put in the blob store first."""
    vectors = await embedder.embed([m.text for m in memories])
    blobs = PostgresBlobStore(store.pool)
    for n, (memory, vector) in enumerate(zip(memories, vectors, strict=True)):
        memory_id = f"{memory.episode_id}-{n}"
        payload = MemoryCreated(
            memory_id=memory_id, user_id=memory.user_id, episode_id=memory.episode_id, text=memory.text,
            kind="fact", content_hash=hashlib.sha256(memory.text.encode()).hexdigest(),
            vector_sha256=await blobs.put(vector_to_bytes(vector)), dimension=embedder.dimension,
            embedder=embedder.name, source="chat", slot=memory.slot, value=memory.value,
        )  # fmt: skip
        event = NewEvent.of(
            payload, correlation_id=f"bench-{memory_id}", causation_id="bench",
            occurred_at=_CREATED, user_id=memory.user_id,
        )  # fmt: skip
        await store.append(f"memory-{memory_id}", [event], expected_version=NO_STREAM)


async def rankings(
    store: PostgresEventStore, fixture: RecallFixture, embedder: Embedder, mode: SearchMode
) -> dict[str, list[str]]:
    """Each question's ranking of its user's memory texts by :func:`search` in ``mode``."""
    texts = []
    for question in fixture.questions:
        async with as_user(store.pool, question.user_id) as conn:
            texts.append(about_the_user(question.question, await own_names(conn, question.user_id)))
    vectors = await embedder.embed(texts)
    ranked: dict[str, list[str]] = {}
    for question, text, vector in zip(fixture.questions, texts, vectors, strict=True):
        query = SearchQuery(
            user_id=question.user_id, text=text, vector=vector, embedder=embedder.name,
            k=DEPTH, candidates=DEPTH, mode=mode,
        )  # fmt: skip
        ranked[question.question_id] = [hit.text for hit in await search(store.pool, query)]
    return ranked


async def measure(ctx: BenchContext, fixture: RecallFixture) -> tuple[dict[str, QualityReport], int]:
    """The report of each method on ``fixture`` by name, and how many memories were indexed."""
    memories = await fixture_memories(fixture, RuleBasedExtractor())
    reports: dict[str, QualityReport] = {}
    for embedder in (HashingEmbedder(), WordLlamaEmbedder()):
        short = embedder.name.split(":")[0].removesuffix("-v1")
        async with ctx.database() as dsn, ctx.store(dsn) as store:
            await remember_all(store, memories, embedder)
            await rebuild(store.pool, store, MEMORY_SEARCH)
            await rebuild(store.pool, store, MEMORIES)
            modes = [SearchMode.VECTOR, SearchMode.HYBRID] + (
                [SearchMode.KEYWORD] if short == "wordllama" else []
            )
            for mode in modes:
                name = "keyword" if mode == SearchMode.KEYWORD else f"{mode.value} {short}"
                reports[name] = quality(
                    name, fixture.questions, await rankings(store, fixture, embedder, mode)
                )
        ctx.progress.advance()
    return reports, len(memories)


FIXTURES = (("", FIXTURE_PATH, "the fixture"), ("heldout.", HELDOUT_PATH, "the held-out fixture"))
"""Each fixture's key infix, file and name in figure sizes."""


async def run(ctx: BenchContext) -> list[Figure]:
    """Quality figures of both fixtures: hybrid against each ranking alone, wordllama against hashing."""
    ctx.progress.start("recall quality (two fixtures, hashing then wordllama)", 2 * len(FIXTURES))
    figures: list[Figure] = []
    for infix, path, name in FIXTURES:
        reports, memories = await measure(ctx, load_fixture(path))
        figures += _figures(
            infix,
            reports,
            f"{reports['keyword'].questions} questions over {memories} memories of {name}'s 8 users",
        )
    return figures


def _figures(infix: str, reports: dict[str, QualityReport], size: str) -> list[Figure]:
    pairs = (
        ("vs-keyword", "hybrid wordllama", "keyword", True),
        ("vs-vector", "hybrid wordllama", "vector wordllama", True),
        ("wordllama-vs-hashing", "vector wordllama", "vector hashing", False),
        ("hybrid-hashing-vs-keyword", "hybrid hashing", "keyword", False),
    )
    figures = [
        _figure(
            f"recall.quality.{infix}recall_at_5",
            "hybrid recall@5 (wordllama + keyword)",
            "recall_at_5",
            reports["hybrid wordllama"],
            reports["keyword"],
            size,
            Target(kind="value_at_least", threshold=RECALL_AT_5_TARGET, text="recall@5 >= 0.9"),
        )
    ]
    for attribute, metric in METRICS:
        for suffix, subject, baseline, judged in pairs:
            target = (
                Target(kind="ratio_above", threshold=1.0, text=f"better than {baseline}") if judged else None
            )
            figures.append(_figure(
                f"recall.quality.{infix}{attribute}.{suffix}", f"{metric}: {subject} vs {baseline}",
                attribute, reports[subject], reports[baseline], size, target,
            ))  # fmt: skip
    return figures


def _figure(
    key: str, title: str, attribute: str, subject: QualityReport, baseline: QualityReport, size: str,
    target: Target | None,
) -> Figure:  # fmt: skip
    return Figure.compare(
        key, benchmark="recall", title=title, unit="", size=size, target=target,
        subject=Measurement.of(subject.method, [getattr(subject, attribute)]),
        baseline=Measurement.of(baseline.method, [getattr(baseline, attribute)]),
    )  # fmt: skip
