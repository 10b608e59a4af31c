"""Composition root: the one place that builds pools, stores and connections from settings.

No I/O happens at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from adapters import AdapterConfig
from eventstore import (
    EVENTSTORE_MIGRATIONS,
    MigrationSource,
    PostgresBlobStore,
    PostgresEventStore,
    SchemaRegistry,
)
from eventstore.pool import create_pool as create_event_store_pool
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from projections import ProjectionsError, connect_nats
from sagas.memory_extraction.events import register_events

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
    """A connection pool to the event store's database (appends skip its reset: :mod:`eventstore.pool`)."""
    return await create_event_store_pool(
        settings.require_database_url(),
        min_size=min_size,
        max_size=max_size,
        server_settings={"application_name": "memsaga"},
    )


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


async def connect_database(settings: Settings) -> asyncpg.Connection:
    """One connection to the event store's database, for schema work.

    :raises MemsagaError: the database cannot be reached.
    """
    dsn = settings.require_database_url()
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise MemsagaError(f"cannot connect to the database at {dsn}: {exc}") from exc


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

    :raises MemsagaError: PostgreSQL cannot be reached; says how to fix it.
    """
    dsn = settings.require_database_url()
    try:
        pool = await create_pool(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise MemsagaError(
            f"cannot connect to PostgreSQL at {dsn}: {exc} (is `memsaga dev up` running?)"
        ) from exc
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
