"""The memsaga worker: the composition root of the saga's workflows and activities.

``memsaga worker`` runs :func:`run_worker`: it connects to Temporal and PostgreSQL, builds
the stores and the activities, and polls the task queue until SIGTERM or SIGINT, then
stops gracefully (activities in flight get ``GRACEFUL_SHUTDOWN`` to finish).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.memory_extraction import EmbedderFactory, ExtractorFactory, MemoryExtractionActivities
from activities.memory_index import StoreMemoryIndex
from adapters import build_embedder, build_extractor
from memsaga.bootstrap import adapter_config, build_stores, create_pool
from memsaga.client import connect
from memsaga.settings import Settings
from sagas.memory_extraction.domain import ExtractionOptions
from sagas.memory_extraction.embedders import Embedder
from sagas.memory_extraction.extractors import Extractor
from workflows import WORKFLOWS

GRACEFUL_SHUTDOWN = timedelta(seconds=20)


def adapter_factories(settings: Settings) -> tuple[ExtractorFactory, EmbedderFactory]:
    """Extractor and embedder builders: the spec from the request's options, the rest from settings.

    A request may point its http adapter at another base URL (``extractor_base_url`` /
    ``embedder_base_url``) without touching the worker's settings.
    """

    config = adapter_config(settings)

    def extractor(options: ExtractionOptions) -> Extractor:
        url = options.extractor_base_url
        return build_extractor(options.extractor, replace(config, llm_base_url=url) if url else config)

    def embedder(options: ExtractionOptions) -> Embedder:
        url = options.embedder_base_url
        return build_embedder(options.embedder, replace(config, embedding_base_url=url) if url else config)

    return extractor, embedder


def build_activities(pool: asyncpg.Pool, settings: Settings) -> MemoryExtractionActivities:
    """The saga's activities over the event store, blob store and memory index of ``pool``."""
    store, blobs = build_stores(pool, settings)
    extractors, embedders = adapter_factories(settings)
    return MemoryExtractionActivities(store, blobs, StoreMemoryIndex(store), extractors, embedders)


def build_worker(client: Client, activities: MemoryExtractionActivities, *, task_queue: str) -> Worker:
    """A worker running every memsaga workflow and the saga's activities on ``task_queue``."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


async def run_worker(settings: Settings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Run a worker until SIGTERM or SIGINT; ``on_ready`` is called once it polls."""
    client = await connect(settings)
    pool = await create_pool(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with build_worker(client, build_activities(pool, settings), task_queue=settings.task_queue):
            if on_ready is not None:
                on_ready()
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await pool.close()
