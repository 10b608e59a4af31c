"""Composition root: the one place that builds memsaga's parts from :class:`Settings`.

Pools and connections, the stores and the schema registry, the adapters and the saga's
activities, the worker, the relay's and runners' configuration, and the :class:`Services`
bundle the commands work with. No I/O happens at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from temporalio.client import Client
from temporalio.worker import Worker

from activities.memory_extraction import EmbedderFactory, ExtractorFactory, MemoryExtractionActivities
from activities.memory_index import StoreMemoryIndex
from adapters import AdapterConfig, build_embedder, build_extractor
from eventstore import (
    EVENTSTORE_MIGRATIONS,
    MigrationSource,
    PostgresBlobStore,
    PostgresEventStore,
    SchemaRegistry,
)
from eventstore.pool import create_pool as create_event_store_pool
from memsaga.errors import DatabaseUnreachable, MemsagaError
from memsaga.settings import Settings
from projections import ProjectionsError, RelayConfig, RunnerConfig, connect_nats
from sagas.memory_extraction.domain import ExtractionOptions
from sagas.memory_extraction.embedders import Embedder
from sagas.memory_extraction.events import register_events
from sagas.memory_extraction.extractors import Extractor
from workflows import WORKFLOWS

GRACEFUL_SHUTDOWN = timedelta(seconds=20)
"""How long a stopping worker lets activities in flight finish."""

MIGRATION_SOURCES: list[MigrationSource] = [
    EVENTSTORE_MIGRATIONS,
    MigrationSource("projections", "projections"),
    MigrationSource("sagas", "sagas"),
]
"""Every schema memsaga applies with ``memsaga migrate``, in order."""


def build_registry() -> SchemaRegistry:
    """The schema registry with every event type memsaga knows."""
    return register_events(SchemaRegistry())


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool to the event store's database (appends skip its reset: :mod:`eventstore.pool`).

    :raises DatabaseUnreachable: the database cannot be reached.
    """
    dsn = settings.require_database_url()
    try:
        return await create_event_store_pool(
            dsn, min_size=min_size, max_size=max_size, server_settings={"application_name": "memsaga"}
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(dsn, exc) from exc


def build_stores(pool: asyncpg.Pool, settings: Settings) -> tuple[PostgresEventStore, PostgresBlobStore]:
    """The event store and blob store over one pool."""
    store = PostgresEventStore(pool, build_registry(), max_payload_bytes=settings.max_payload_bytes)
    return store, PostgresBlobStore(pool)


def adapter_config(settings: Settings) -> AdapterConfig:
    """The extractors' and embedders' configuration from ``settings``."""
    return AdapterConfig(
        llm_base_url=settings.llm_base_url,
        llm_api_key=settings.llm_api_key,
        llm_model=settings.llm_model,
        embedding_base_url=settings.embedding_base_url,
        embedding_api_key=settings.embedding_api_key,
        embedding_model=settings.embedding_model,
        embedding_dimension=settings.embedding_dimension,
        http_timeout_seconds=settings.http_timeout_seconds,
    )


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


def check_adapters(settings: Settings) -> None:
    """Build the configured extractor and embedder once, so a bad configuration (``http``
    without its base URL) is an error before a saga starts or a worker polls, not a failed saga.

    :raises AdapterError: the configuration cannot work; the message names the variable.
    """
    config = adapter_config(settings)
    build_extractor(settings.extractor, config)
    build_embedder(settings.embedder, config)


def build_search_embedder(settings: Settings) -> Embedder:
    """The embedder searches embed questions with: the configured one (``MEMSAGA_EMBEDDER``).

    :raises AdapterError: it cannot be built (unknown name, http without a base URL).
    """
    return build_embedder(settings.embedder, adapter_config(settings))


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


def relay_config(settings: Settings, *, accept_stream_limits: bool = False) -> RelayConfig:
    """How the relay publishes: stream, subjects, batches and polling from ``settings``."""
    return RelayConfig(
        stream=settings.nats_stream,
        subject_prefix=settings.subject_prefix,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_seconds,
        duplicate_window=settings.stream_duplicate_window_seconds,
        accept_stream_limits=accept_stream_limits,
    )


def runner_config(settings: Settings) -> RunnerConfig:
    """How projection runners consume: stream, subjects, batches and redelivery from ``settings``."""
    return RunnerConfig(
        stream=settings.nats_stream,
        subject_prefix=settings.subject_prefix,
        batch_size=settings.projection_batch_size,
        ack_wait=settings.projection_ack_wait_seconds,
        max_deliver=settings.projection_max_deliver,
        retry_delay=settings.projection_retry_delay_seconds,
    )


async def connect_database(settings: Settings) -> asyncpg.Connection:
    """One connection to the event store's database, for schema work.

    :raises DatabaseUnreachable: the database cannot be reached.
    """
    dsn = settings.require_database_url()
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(dsn, exc) from exc


@dataclass
class Services:
    """What the relay and projection commands work with."""

    settings: Settings
    pool: asyncpg.Pool
    store: PostgresEventStore
    nc: NATS | None

    @property
    def js(self) -> JetStreamContext:
        """JetStream of the NATS connection (only when one was asked for)."""
        assert self.nc is not None
        return self.nc.jetstream()


@contextlib.asynccontextmanager
async def services(settings: Settings, *, with_nats: bool, name: str = "memsaga") -> AsyncIterator[Services]:
    """Open PostgreSQL (and NATS, waiting for it as long as it takes); close them after.

    :raises DatabaseUnreachable: PostgreSQL cannot be reached.
    """
    pool = await create_pool(settings)
    nc = None
    try:
        if with_nats:
            nc = await connect_nats(settings.require_nats_url(), name=name, connect_timeout=None)
        store, _ = build_stores(pool, settings)
        yield Services(settings, pool, store, nc)
    finally:
        if nc is not None:
            await nc.close()
        await pool.close()


async def optional_nats(settings: Settings, name: str) -> tuple[NATS | None, str | None]:
    """A NATS connection for a status command, or None and why not (status still shows PostgreSQL's view)."""
    try:
        return await connect_nats(settings.require_nats_url(), name=name, connect_timeout=3.0), None
    except (MemsagaError, ProjectionsError, OSError, nats.errors.Error) as exc:
        return None, f"NATS unreachable: {exc}"
