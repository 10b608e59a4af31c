"""Benchmark 5: sagas, completed per second and their latency, ``sagas`` at once.

* memsaga: ``MemoryExtraction`` sagas (rules extractor, hashing embedder, no review) started
  at once with ``memsaga.client.start_extraction``; each latency runs from the start call
  to its result. The worker (memsaga's workflows and activities over a fresh database)
  runs in this process.
* baseline: a bare workflow running as many no-op activities as one saga schedules (counted
  from a warm-up saga's history), on the same server, worker and task queue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from bench.bare_workflow import BareWorkflow, noop
from bench.context import BenchContext
from bench.harness import merge_peaks, percentile
from bench.results_model import Figure, Measurement, Target
from memsaga.bootstrap import GRACEFUL_SHUTDOWN, build_activities
from memsaga.client import connect, extraction_result, start_extraction, workflow_id_for
from memsaga.devstack import ensure_search_attributes
from memsaga.settings import Settings
from sagas.memory_extraction.domain import ExtractionOptions, ExtractionRequest
from workflows import WORKFLOWS

EPISODE = "I moved to Lisbon last spring. I work as a data engineer. I prefer green tea over coffee."


async def one_saga(client: Client, settings: Settings, n: int, key: str) -> float:
    """Start one saga and wait for its result; its latency in seconds."""
    request = ExtractionRequest(user_id=f"user-{key}-{n}", text=EPISODE, options=ExtractionOptions())
    started = time.perf_counter()
    handle = await start_extraction(client, request, workflow_id=f"bench-{key}-{n}", settings=settings)
    result = await extraction_result(client, handle.workflow_id)
    if result.outcome != "completed":
        raise RuntimeError(f"saga {handle.workflow_id} ended {result.outcome}: {result.reason}")
    return time.perf_counter() - started


async def one_bare(client: Client, task_queue: str, activities: int, n: int, key: str) -> float:
    """Run one bare workflow to its end; its latency in seconds."""
    started = time.perf_counter()
    await client.execute_workflow(BareWorkflow.run, activities, id=f"bare-{key}-{n}", task_queue=task_queue)
    return time.perf_counter() - started


async def scheduled_activities(client: Client, workflow_id: str) -> int:
    """How many activities a finished workflow scheduled."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)


Runner = Callable[[int], Awaitable[float]]


class _Round:
    """``count`` runs at once: wall seconds and every latency."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.latencies: list[float] = []
        self.peaks: dict[str, float] = {}

    async def measure(self, ctx: BenchContext, count: int, run_one: Runner) -> float:
        with ctx.sampler.running() as sampler:
            started = time.perf_counter()
            latencies = await asyncio.gather(*(run_one(n) for n in range(count)))
            seconds = time.perf_counter() - started
        merge_peaks(self.peaks, sampler.peaks)
        self.latencies += [s * 1000 for s in latencies]
        self.rates.append(count / seconds)
        return count / seconds


async def run(ctx: BenchContext) -> list[Figure]:
    """Warm up, count the saga's activities, then alternate saga and bare rounds."""
    count, rounds = ctx.sizes.sagas, ctx.sizes.saga_rounds
    task_queue = ctx.unique("sagas").lower()
    async with ctx.database() as dsn, ctx.store(dsn, max_size=20) as store:
        settings = ctx.settings.model_copy(update={"database_url": dsn, "task_queue": task_queue})
        client = await connect(settings)
        await ensure_search_attributes(client)
        activities = build_activities(store.pool, settings)
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[*WORKFLOWS, BareWorkflow],
            activities=[*activities.all(), noop],
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
        async with worker:
            key = ctx.run_id
            await one_saga(client, settings, 0, f"{key}-warm")
            steps = await scheduled_activities(client, workflow_id_for(f"bench-{key}-warm-0"))
            await one_bare(client, task_queue, steps, 0, f"{key}-warm")
            sides = {"memsaga": _Round(), "temporal": _Round()}
            ctx.progress.start(f"sagas ({count} at once)", rounds * 2)
            for r in range(rounds):
                order = ["memsaga", "temporal"] if r % 2 == 0 else ["temporal", "memsaga"]
                for name in order:
                    rkey = f"{key}-r{r}-{uuid.uuid4().hex[:6]}"

                    async def one(n: int, name: str = name, rkey: str = rkey) -> float:
                        if name == "memsaga":
                            return await one_saga(client, settings, n, rkey)
                        return await one_bare(client, task_queue, steps, n, rkey)

                    await sides[name].measure(ctx, count, one)
                    ctx.progress.advance()
    return _figures(sides, count, rounds, steps)


def _figures(sides: dict[str, _Round], count: int, rounds: int, steps: int) -> list[Figure]:
    saga, bare = sides["memsaga"], sides["temporal"]
    size = f"{count} at once × {rounds} round(s); {steps} activities per workflow"
    figures = [
        Figure.compare(
            "sagas.throughput",
            benchmark="sagas",
            title="sagas completed/s vs a bare workflow with as many no-op activities",
            unit="sagas/s",
            subject=Measurement.of("MemoryExtraction", saga.rates, saga.peaks),
            baseline=Measurement.of(f"bare workflow, {steps} no-op activities", bare.rates, bare.peaks),
            target=Target(kind="ratio_at_least", threshold=0.6, text=">= 0.6x bare workflow"),
            size=size,
        )
    ]
    for pct in (50, 99):
        figures.append(
            Figure.compare(
                f"sagas.latency.p{pct}",
                benchmark="sagas",
                title=f"saga latency p{pct} (start → result) vs the bare workflow",
                unit="ms",
                higher_is_better=False,
                subject=Measurement.of("MemoryExtraction", [percentile(saga.latencies, pct)]),
                baseline=Measurement.of("bare workflow", [percentile(bare.latencies, pct)]),
                size=size,
            )
        )
    return figures
