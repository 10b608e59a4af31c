"""Composition root: builds pools and stores from settings. No I/O happens at import time."""

from __future__ import annotations

import asyncpg

from adapters import AdapterConfig
from eventstore import (
    EVENTSTORE_MIGRATIONS,
    MigrationSource,
    PostgresBlobStore,
    PostgresEventStore,
    SchemaRegistry,
)
from eventstore.pool import create_pool as create_event_store_pool
from memsaga.settings import Settings
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
