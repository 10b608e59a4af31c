"""Recall quality: recall@1, recall@5 and MRR of each search mode on the retrieval fixture.

Every memory the rule-based extractor makes of the fixture's episodes is written as the saga
writes it (its vector in the blob store, a ``MemoryCreated`` in its own stream), once per
embedder in a database of its own (a memory has one vector); ``rebuild`` builds
``memory_search`` from the events, and each question runs through :func:`projections.search`
in each mode (k = 50: the whole ranking of a fixture user). Figures compare hybrid
(wordllama + keyword) with each ranking alone, and wordllama with hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.wordllama_embedder import WordLlamaEmbedder
from bench.context import BenchContext
from bench.recall_fixture import (
    FixtureMemory,
    QualityReport,
    RecallFixture,
    fixture_memories,
    load_fixture,
    quality,
)
from bench.results_model import Figure, Measurement, Target
from eventstore import NO_STREAM, NewEvent, PostgresBlobStore, PostgresEventStore
from projections import MEMORY_SEARCH, SearchMode, SearchQuery, rebuild, search
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
            embedder=embedder.name, source="chat",
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
    vectors = await embedder.embed([q.question for q in fixture.questions])
    ranked: dict[str, list[str]] = {}
    for question, vector in zip(fixture.questions, vectors, strict=True):
        query = SearchQuery(
            user_id=question.user_id, text=question.question, vector=vector, embedder=embedder.name,
            k=DEPTH, candidates=DEPTH, mode=mode,
        )  # fmt: skip
        ranked[question.question_id] = [hit.text for hit in await search(store.pool, query)]
    return ranked


async def measure(ctx: BenchContext) -> tuple[dict[str, QualityReport], int]:
    """The report of each method by name, and how many memories were indexed."""
    fixture = load_fixture()
    memories = await fixture_memories(fixture, RuleBasedExtractor())
    reports: dict[str, QualityReport] = {}
    for embedder in (HashingEmbedder(), WordLlamaEmbedder()):
        short = embedder.name.split(":")[0].removesuffix("-v1")
        async with ctx.database() as dsn, ctx.store(dsn) as store:
            await remember_all(store, memories, embedder)
            await rebuild(store.pool, store, MEMORY_SEARCH)
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


async def run(ctx: BenchContext) -> list[Figure]:
    """Quality figures: hybrid against keyword and vector alone, wordllama against hashing."""
    ctx.progress.start("recall quality (fixture, hashing then wordllama)", 2)
    reports, memories = await measure(ctx)
    questions = reports["keyword"].questions
    size = f"{questions} questions over {memories} memories of the fixture's 8 users"
    pairs = (
        ("vs-keyword", "hybrid wordllama", "keyword", True),
        ("vs-vector", "hybrid wordllama", "vector wordllama", True),
        ("wordllama-vs-hashing", "vector wordllama", "vector hashing", False),
        ("hybrid-hashing-vs-keyword", "hybrid hashing", "keyword", False),
    )
    figures = [
        _figure(
            "recall.quality.recall_at_5",
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
                f"recall.quality.{attribute}.{suffix}", f"{metric}: {subject} vs {baseline}", attribute,
                reports[subject], reports[baseline], size, target,
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
