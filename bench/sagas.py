"""Benchmark 5: sagas, completed per second and their latency, ``sagas`` at once.

* memsaga: ``MemoryExtraction`` sagas (rules extractor, hashing embedder, no review) started
  at once with ``memsaga.client.start_extraction``; each latency runs from the start call
  to its result. The worker (memsaga's workflows and activities over a fresh database)
  runs in this process.
* baseline: a bare workflow running as many no-op activities as one saga schedules (counted
  from a warm-up saga's history), on the same server, worker and task queue.
* two workers: the same sagas with a second worker beside the in-process one, a ``memsaga
  worker`` process of its own on the same task queue and database (started before the round's
  clock, stopped after it), against the one-worker rounds of the same run. A second ``Worker``
  in this process would share its event loop and interpreter lock with the first, so it could
  not use the second core; a process can, as a second worker would in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

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
READY_TIMEOUT = 60.0
_WORKER_SETTINGS = (
    "database_url",
    "temporal_address",
    "temporal_namespace",
    "task_queue",
    "extractor",
    "embedder",
    "state_dir",
    "allow_unsafe_postgres",
)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a ``memsaga worker`` process serving the same queue, database and keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    for name in _WORKER_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            env[f"MEMSAGA_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    if settings.master_key is not None:
        env["MEMSAGA_MASTER_KEY"] = settings.master_key.get_secret_value()
    elif settings.master_key_file is not None:
        env["MEMSAGA_MASTER_KEY_FILE"] = str(settings.master_key_file)
    return env


@contextlib.asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[None]:
    """A second worker, ``memsaga worker`` in a process of its own, running once it says it is ready.

    :raises RuntimeError: it exited or did not get ready within :data:`READY_TIMEOUT`.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memsaga",
        "worker",
        env=worker_environment(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while b"memsaga worker ready" not in (line := await process.stdout.readline()):
                if not line:
                    raise RuntimeError(
                        f"the second worker exited with {await process.wait()} before it was ready"
                    )
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # graceful: it finishes its tasks in hand
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


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
            names = ["memsaga", "temporal", TWO_WORKERS]
            sides = {name: _Round() for name in names}
            ctx.progress.start(f"sagas ({count} at once)", rounds * len(names))
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    rkey = f"{key}-r{r}-{uuid.uuid4().hex[:6]}"

                    async def one(n: int, name: str = name, rkey: str = rkey) -> float:
                        if name == "temporal":
                            return await one_bare(client, task_queue, steps, n, rkey)
                        return await one_saga(client, settings, n, rkey)

                    if name == TWO_WORKERS:  # only for its round: it knows no bare workflow
                        async with worker_process(settings):
                            await sides[name].measure(ctx, count, one)
                    else:
                        await sides[name].measure(ctx, count, one)
                    ctx.progress.advance()
    return _figures(sides, count, rounds, steps)


TWO_WORKERS = "memsaga, 2 workers"


def _figures(sides: dict[str, _Round], count: int, rounds: int, steps: int) -> list[Figure]:
    saga, bare, two = sides["memsaga"], sides["temporal"], sides[TWO_WORKERS]
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
        ),
        Figure.compare(
            "sagas.throughput.w2",
            benchmark="sagas",
            title="sagas completed/s with 2 workers vs 1 worker",
            unit="sagas/s",
            subject=Measurement.of(
                "MemoryExtraction, 2 workers (in-process + 1 process)", two.rates, two.peaks
            ),
            baseline=Measurement.of("MemoryExtraction, 1 worker (in-process)", saga.rates, saga.peaks),
            size=size,
            notes=[
                "the second worker is a `memsaga worker` process on the same task queue; on 2 cores it"
                " shares them with the first, the bench's clients, PostgreSQL and Temporal: no target"
            ],
        ),
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
