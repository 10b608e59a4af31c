"""Session-wide service fixtures: lazy, env-first, never on fixed ports.

Each service comes from an environment variable when one is set
(``MEMSAGA_TEST_*`` first, then ``MEMSAGA_*``); otherwise the first test that asks
for it starts a private one from the pip-installed binaries (``memsaga.devstack``)
in a temporary directory, stopped at the end of the session.

Tests that use a service are marked ``services``; ``make test-unit`` runs the others
(``MEMSAGA_TEST_TIER=unit``), where asking for a service fails and no server can start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import memsaga.devstack.nats as devstack_nats
import memsaga.devstack.nats_cluster as devstack_nats_cluster
import memsaga.devstack.postgres as devstack_postgres
import memsaga.devstack.temporal as devstack_temporal
from eventstore.keys import MasterKey
from memsaga.devstack import (
    ensure_search_attributes,
    start_nats,
    start_postgres,
    start_temporal,
    stop_service,
    with_database,
)
from memsaga.devstack.databases import DatabaseFactory
from memsaga.devstack.temporal import connect
from memsaga.telemetry import setup_metrics, setup_tracing

UNIT_TIER = os.environ.get("MEMSAGA_TEST_TIER") == "unit"
# One master key for the whole run, inherited by the role processes tests start (docs/privacy.md).
os.environ.setdefault("MEMSAGA_MASTER_KEY", MasterKey.generate().text())
SERVICE_FIXTURES = frozenset({"postgres_url", "pgvector_url", "nats_url", "temporal_address"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``services`` every test that asks, directly or through a fixture, for a service."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _refuse_spawn(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the unit tier starts no servers: mark the test `services`")


@pytest.fixture(scope="session", autouse=True)
def _no_servers_in_the_unit_tier() -> Iterator[None]:
    """In the unit tier, every server start of ``memsaga.devstack`` fails instead of running."""
    if not UNIT_TIER:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for module in (devstack_nats, devstack_nats_cluster, devstack_postgres, devstack_temporal):
            patch.setattr(module, "spawn", _refuse_spawn)
        yield


def _service_dir(name: str) -> Path:
    """A private state directory for a server this session starts, outside pytest's temporary root.

    Every pytest session that starts keeps only the three newest session roots and deletes the
    rest, so with several sessions on one machine a long one would lose its servers' files
    (Temporal's database, JetStream's store) under them; and, as root, each new session takes
    the group and other bits off the root (0700), which would lock PostgreSQL's system user out.
    """
    return Path(tempfile.mkdtemp(prefix=f"memsaga-test-{name}-"))


def _service(*names: str) -> str | None:
    """The service URL the environment names; in the unit tier, a failure instead."""
    if UNIT_TIER:
        pytest.fail(f"the unit tier has no services ({names[0]}): mark the test `services`")
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """URL of an admin database (``postgres``) on a server the tests may create databases on."""
    url = _service("MEMSAGA_TEST_DATABASE_URL", "MEMSAGA_DATABASE_URL")
    if url:
        yield url
        return
    state_dir = _service_dir("postgres")
    service = await start_postgres(state_dir)
    try:
        yield with_database(service.url, "postgres")
    finally:
        stop_service(service)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pgvector_url(postgres_url: str) -> AsyncIterator[str]:
    """Like ``postgres_url``, on a server that has pgvector: that one when it does, else a private one."""
    if await _has_extension(postgres_url, "vector"):
        yield postgres_url
        return
    state_dir = _service_dir("pgvector")
    service = await start_postgres(state_dir)
    try:
        yield with_database(service.url, "postgres")
    finally:
        stop_service(service)
        shutil.rmtree(state_dir, ignore_errors=True)


async def _has_extension(url: str, name: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = $1", name))
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fresh_pgvector_database(pgvector_url: str) -> AsyncIterator[DatabaseFactory]:
    """:func:`fresh_database` on a server that has pgvector."""
    factory = DatabaseFactory(pgvector_url)
    try:
        yield factory
    finally:
        await factory.drop_all()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_url() -> AsyncIterator[str]:
    """URL of a NATS server with JetStream."""
    url = _service("MEMSAGA_TEST_NATS_URL", "MEMSAGA_NATS_URL")
    if url:
        yield url
        return
    state_dir = _service_dir("nats")
    service = await start_nats(state_dir)
    try:
        yield service.url
    finally:
        stop_service(service)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_address() -> AsyncIterator[str]:
    """``host:port`` of a Temporal server with the CorrelationId/UserId search attributes."""
    address = _service("MEMSAGA_TEST_TEMPORAL_ADDRESS", "MEMSAGA_TEMPORAL_ADDRESS")
    if address:
        # Upserting an unregistered attribute makes a workflow task retry forever: register them.
        await ensure_search_attributes(await connect(address))
        yield address
        return
    state_dir = _service_dir("temporal")
    service = await start_temporal(state_dir)
    try:
        yield service.url
    finally:
        stop_service(service)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fresh_database(postgres_url: str) -> AsyncIterator[DatabaseFactory]:
    """Factory of new empty databases, usable from fixtures of any scope.

    ``url = await fresh_database()`` creates ``memsaga_test_<12 hex>`` on the
    ``postgres_url`` server; ``await fresh_database.drop(url)`` drops it early,
    and whatever is left is dropped (``WITH (FORCE)``) at the end of the session.
    """
    factory = DatabaseFactory(postgres_url)
    try:
        yield factory
    finally:
        await factory.drop_all()


@pytest.fixture(scope="session")
def _global_span_exporter() -> InMemorySpanExporter:
    """The process-wide tracer provider, installed once (OpenTelemetry refuses a second one)."""
    exporter = InMemorySpanExporter()
    setup_tracing("client", exporter=exporter)
    return exporter


@pytest.fixture
def span_exporter(_global_span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Spans finished during this test, through the global provider."""
    _global_span_exporter.clear()
    return _global_span_exporter


@pytest.fixture(scope="session", autouse=True)
def metric_reader() -> InMemoryMetricReader:
    """The reader of the process-wide meter provider, installed before any test runs: a provider
    takes its readers when it is built, and a command run in-process would install one first.
    Values are cumulative over the session: compare before and after (``tests/metric_points.py``)."""
    reader = InMemoryMetricReader()
    setup_metrics("client", reader=reader)
    return reader
