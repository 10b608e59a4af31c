"""Recall speed: top-10 ``search()`` latency beside exact brute force, HNSW recall, index build memory.

For each data set (one user with ``recall_user_small`` and with ``recall_user_large`` memories,
``recall_users`` users with ``recall_per_user`` each), a fresh database gets the active
``memory_search`` table from :func:`ensure_built`, its HNSW indexes are dropped, synthetic rows
are COPYed in (:mod:`bench.recall_data`), and the same index definitions are created again
with the PostgreSQL server's memory sampled. Then ``recall_questions`` questions, each of a
random user, run through :func:`projections.search` (VECTOR and HYBRID, k = 10) on two pools
of the same database: memsaga's, and one whose sessions set ``enable_indexscan = off``, so the
same SQL can only rank by an exact scan of the user's rows (sequential, or a bitmap scan of
the user index). Both plans are checked with EXPLAIN and their nodes kept in the notes. The
sides alternate per question, who goes first alternating too; warm-up queries are not timed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

import asyncpg

from bench.context import BenchContext
from bench.harness import MB, Stopwatch, percentile, tree_memory
from bench.recall_data import Corpus, Vectors, bulk_load, embed, question_texts
from bench.results_model import Figure, Measurement, Target
from projections import MEMORY_SEARCH, READ_SCHEMA, SearchMode, SearchQuery, ensure_built, search
from projections.memory_search import copy_words, explain_search

K = 10
WARM_UP = 5
MAINTENANCE_WORK_MEM = "2GB"
P95_TARGET_MS = 20.0
RECALL_TARGET = 0.95


@dataclass(frozen=True)
class Case:
    """One data set: ``users`` users with ``per_user`` memories each."""

    key: str
    users: int
    per_user: int
    full: bool  # at the sizes the issue states its targets for

    @property
    def rows(self) -> int:
        return self.users * self.per_user

    @property
    def size(self) -> str:
        return f"{self.rows:,} memories of {self.users:,} user{'s' if self.users > 1 else ''}"


def cases(ctx: BenchContext) -> list[Case]:
    """The three data sets of this run's sizes."""
    s = ctx.sizes
    return [
        Case("one_user_small", 1, s.recall_user_small, s.recall_user_small == 10_000),
        Case("one_user_large", 1, s.recall_user_large, s.recall_user_large == 100_000),
        Case(
            "many_users", s.recall_users, s.recall_per_user, s.recall_users * s.recall_per_user == 1_000_000
        ),
    ]


@dataclass
class Build:
    """What loading and indexing one data set took."""

    load_seconds: float
    index_seconds: float
    rest_mb: float
    peaks: dict[str, float]
    notices: list[str]
    settings: str
    hnsw: list[str]  # names of the HNSW indexes


async def _hnsw_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2"
        " AND indexdef LIKE '%USING hnsw%' ORDER BY indexname",
        READ_SCHEMA,
        table,
    )
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def load_and_index(ctx: BenchContext, dsn: str, version: int, corpus: Corpus, case: Case) -> Build:
    """Drop the HNSW indexes, COPY the rows (and derive their words), VACUUM ANALYZE, and build
    the same indexes again."""
    tables = MEMORY_SEARCH.tables_at(version)
    table = f"memory_search_v{version}"  # unqualified, for COPY and pg_indexes
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await _hnsw_indexes(conn, table)
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{READ_SCHEMA}"."{name}"')
        with Stopwatch() as load:
            await bulk_load(dsn, READ_SCHEMA, table, corpus, case.users, case.per_user)
            await copy_words(conn, tables)
        for qualified in tables.values():
            await conn.execute(f"VACUUM (ANALYZE) {qualified}")
        await conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
        shown = [
            f"{name} = {await conn.fetchval(f'SHOW {name}')}"
            for name in ("maintenance_work_mem", "max_parallel_maintenance_workers", "shared_buffers")
        ]
        notices: list[str] = []
        conn.add_log_listener(lambda _, message: notices.append(str(message.message)))
        postgres = ctx.sampler.processes.get("postgres")
        rest = tree_memory(postgres) / MB if postgres else 0.0
        with ctx.sampler.running() as sampler, Stopwatch() as build:
            for _, definition in indexes:
                await conn.execute(definition)
        await conn.execute(f'ANALYZE "{READ_SCHEMA}"."{table}"')
        peaks = {"postgres": sampler.peaks["postgres"]} if "postgres" in sampler.peaks else {}
        names = [name for name, _ in indexes]
        return Build(load.seconds, build.seconds, round(rest, 1), peaks, notices, ", ".join(shown), names)
    finally:
        await conn.close()


def _nodes(plan: object) -> Iterator[str]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, as "type" or "type using index"."""
    if isinstance(plan, list):
        for item in plan:
            yield from _nodes(item)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            index = plan.get("Index Name")
            yield f"{plan['Node Type']} using {index}" if index else str(plan["Node Type"])
        for value in plan.values():
            if isinstance(value, list | dict):
                yield from _nodes(value)


async def plan_nodes(pool: asyncpg.Pool, query: SearchQuery) -> list[str]:
    """The distinct nodes of ``search()``'s plan for ``query``, in plan order."""
    return list(dict.fromkeys(_nodes(await explain_search(pool, query))))


@dataclass
class Timings:
    """Per-question latencies (ms) and top-10 memory ids, by side."""

    ms: dict[str, list[float]]
    ids: dict[str, list[list[str]]]


async def time_searches(
    sides: dict[str, tuple[asyncpg.Pool, SearchMode]], queries: list[SearchQuery]
) -> Timings:
    """Every query on every side, alternating who goes first; the first ``WARM_UP`` are not kept."""
    timings = Timings({name: [] for name in sides}, {name: [] for name in sides})
    names = list(sides)
    for i, query in enumerate(queries):
        for name in names if i % 2 == 0 else list(reversed(names)):
            pool, mode = sides[name]
            with Stopwatch() as sw:
                rows = await search(pool, replace(query, mode=mode))
            if i >= WARM_UP:
                timings.ms[name].append(sw.seconds * 1000)
                timings.ids[name].append([r.memory_id for r in rows])
    return timings


def overlap(found: list[list[str]], exact: list[list[str]]) -> float:
    """Mean of |found top-k ∩ exact top-k| / |exact top-k| over the questions (1.0 where exact is empty)."""
    shares = [len(set(f) & set(e)) / len(e) if e else 1.0 for f, e in zip(found, exact, strict=True)]
    return sum(shares) / len(shares)


def queries(case: Case, texts: list[str], vectors: Vectors, *, seed: int = 5) -> list[SearchQuery]:
    """One query per question text, each of a random user of ``case``."""
    rng = random.Random(seed)
    return [
        SearchQuery(
            user_id=f"user-{rng.randrange(case.users):04d}",
            text=text,
            vector=vector.tolist(),
            embedder="wordllama:l2_supercat_256",
            k=K,
        )
        for text, vector in zip(texts, vectors, strict=True)
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    """Every data set of :func:`cases`, one after the other, each in a database of its own."""
    all_cases = cases(ctx)
    largest = max(case.rows for case in all_cases)
    ctx.progress.start("recall speed: embedding the synthetic corpus", len(all_cases) + 1)
    corpus = await Corpus.of(min(largest, ctx.sizes.recall_text_pool))
    questions = question_texts(ctx.sizes.recall_questions + WARM_UP)
    question_vectors = await embed(questions)
    ctx.progress.advance()
    figures: list[Figure] = []
    for case in all_cases:
        figures += await _case(ctx, case, corpus, queries(case, questions, question_vectors))
        ctx.progress.advance()
    return figures


async def _case(ctx: BenchContext, case: Case, corpus: Corpus, asked: list[SearchQuery]) -> list[Figure]:
    async with ctx.database() as dsn, ctx.store(dsn) as store:
        active = await ensure_built(store.pool, store, MEMORY_SEARCH)
        build = await load_and_index(ctx, dsn, active.version, corpus, case)
        memsaga = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        exact = await asyncpg.create_pool(
            dsn, min_size=1, max_size=2, server_settings={"enable_indexscan": "off"}
        )
        try:
            plans = {
                f"{side} {mode.value}": await plan_nodes(pool, replace(asked[0], mode=mode))
                for side, pool in (("memsaga", memsaga), ("exact", exact))
                for mode in (SearchMode.VECTOR, SearchMode.HYBRID)
            }
            timings = await time_searches(
                {
                    "memsaga vector": (memsaga, SearchMode.VECTOR),
                    "exact vector": (exact, SearchMode.VECTOR),
                    "memsaga hybrid": (memsaga, SearchMode.HYBRID),
                    "exact hybrid": (exact, SearchMode.HYBRID),
                },
                asked,
            )
        finally:
            await memsaga.close()
            await exact.close()
    if any(
        node.endswith(f" using {index}")
        for index in build.hnsw
        for node in plans["exact vector"] + plans["exact hybrid"]
    ):
        raise RuntimeError(f"the exact baseline used an HNSW index: {plans}")
    return _figures(case, build, plans, timings)


def _latency(label: str, ms: list[float], pct: int) -> Measurement:
    return Measurement(label=label, value=percentile(ms, pct), samples=[round(x, 3) for x in ms])


def _figures(case: Case, build: Build, plans: dict[str, list[str]], t: Timings) -> list[Figure]:
    key = f"recall.speed.{case.key}"
    notes = [f"HNSW indexes: {', '.join(build.hnsw)}"]
    notes += [f"{name} plan: {', '.join(nodes)}" for name, nodes in plans.items()]
    figures = []
    for mode in ("vector", "hybrid"):
        for pct in (50, 95):
            subject, baseline = t.ms[f"memsaga {mode}"], t.ms[f"exact {mode}"]
            judged = pct == 95 and case.key == "one_user_large"
            target = Target(
                kind="value_below", threshold=P95_TARGET_MS, text="p95 < 20 ms", applies=case.full
            )
            figures.append(
                Figure.compare(
                    f"{key}.{mode}.p{pct}",
                    benchmark="recall",
                    title=f"top-{K} {mode} search p{pct}: memsaga search() vs exact brute force",
                    unit="ms",
                    higher_is_better=False,
                    subject=_latency(f"memsaga {mode} search()", subject, pct),
                    baseline=_latency(f"exact {mode} (enable_indexscan = off)", baseline, pct),
                    target=target if judged else None,
                    size=case.size,
                    notes=notes,
                )
            )
    recall = overlap(t.ids["memsaga vector"], t.ids["exact vector"])
    figures.append(Figure.compare(
        f"{key}.hnsw_recall", benchmark="recall", unit="", title=f"recall@{K} of vector search against exact",
        subject=Measurement.of("memsaga vector search", [recall]),
        baseline=Measurement.of("exact brute force", [1.0]),
        target=Target(kind="value_at_least", threshold=RECALL_TARGET, text=">= 0.95", applies=case.full),
        size=case.size, notes=notes,
    ))  # fmt: skip
    build_notes = [build.settings, f"{build.load_seconds:.1f} s to COPY the rows", *build.notices]
    if build.peaks:
        figures.append(Figure.compare(
            f"{key}.index_build.memory", benchmark="recall", unit="MB", higher_is_better=False,
            title="PostgreSQL memory (PSS) building the HNSW index vs at rest before",
            subject=Measurement.of("CREATE INDEX … USING hnsw, peak", [build.peaks["postgres"]], build.peaks),
            baseline=Measurement.of("server at rest, rows loaded", [build.rest_mb]),
            size=case.size, notes=build_notes,
        ))  # fmt: skip
    figures.append(Figure.compare(
        f"{key}.index_build.seconds", benchmark="recall", unit="s", higher_is_better=False,
        title="HNSW index build vs COPY of the same rows",
        subject=Measurement.of("CREATE INDEX … USING hnsw", [build.index_seconds], build.peaks),
        baseline=Measurement.of("COPY of the rows", [build.load_seconds]),
        size=case.size, notes=build_notes,
    ))  # fmt: skip
    return figures
