"""Event-store fixtures: one migrated database per test session, and both store kinds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from eventstore import EVENTSTORE_MIGRATIONS, InMemoryEventStore, NewEvent, PostgresEventStore, create_pool
from memsaga.devstack.databases import DatabaseFactory
from tests.eventstore.schemas import Noted, make_registry
from tests.support import migrated_database


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def eventstore_dsn(fresh_database: DatabaseFactory) -> str:
    """A database with the event-store schema applied."""
    return await migrated_database(fresh_database, [EVENTSTORE_MIGRATIONS])


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_pool(eventstore_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(eventstore_dsn, min_size=2, max_size=60)  # the pool memsaga builds
    yield pool
    await pool.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.services)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Builds a store of the parametrised kind (the contract suite runs against both)."""

    # Resolved here, during setup: an async fixture cannot be set up from inside a running test.
    pool = request.getfixturevalue("pg_pool") if store_kind == "postgres" else None

    def build(**kwargs: Any) -> InMemoryEventStore | PostgresEventStore:
        registry = kwargs.pop("registry", None) or make_registry()
        if pool is None:
            return InMemoryEventStore(registry, **kwargs)
        return PostgresEventStore(pool, registry, **kwargs)

    return build


def stream() -> str:
    """A fresh stream id, so tests sharing a database never meet."""
    return f"note-{uuid.uuid4().hex[:12]}"


def noted(text: str = "hello", *, event_id: uuid.UUID | None = None, **kwargs: Any) -> NewEvent:
    return NewEvent.of(
        Noted(text=text),
        correlation_id=kwargs.pop("correlation_id", "corr-test"),
        causation_id=kwargs.pop("causation_id", "cmd-test"),
        occurred_at=kwargs.pop("occurred_at", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        event_id=event_id,
        **kwargs,
    )
