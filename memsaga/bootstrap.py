"""Composition root: the one place that builds memsaga's parts from :class:`Settings`.

Pools and connections, the stores and the schema registry, the adapters and the saga's
activities, the worker, the relay's and runners' configuration, and the :class:`Services`
bundle the commands work with. No I/O happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from temporalio.client import Client
from temporalio.worker import Worker

from activities.forgetting import ForgettingActivities
from activities.memory_extraction import EmbedderFactory, ExtractorFactory, MemoryExtractionActivities
from activities.memory_index import StoreMemoryIndex
from activities.metrics import AttemptMetrics
from activities.reextraction import ReextractionActivities
from adapters import AdapterConfig, build_embedder, build_extractor
from eventstore import (
    EVENTSTORE_MIGRATIONS,
    MigrationSource,
    PostgresBlobStore,
    PostgresEventStore,
    SchemaRegistry,
)
from eventstore.keys import KeyRing, MasterKey
from eventstore.pool import create_pool as create_event_store_pool
from eventstore.vault import Vault
from memsaga.doctor.durability import ALLOW_VARIABLE, require_durable
from memsaga.errors import DatabaseUnreachable, MasterKeyMissing, MemsagaError
from memsaga.settings import Settings
from memsaga.stackstate import MASTER_KEY_FILE
from projections import ProjectionsError, RelayConfig, RunnerConfig, connect_nats, server_urls
from projections.errors import NatsUnavailable
from sagas.forgetting import register_forget_events
from sagas.memory_extraction.domain import ExtractionOptions
from sagas.memory_extraction.embedders import Embedder
from sagas.memory_extraction.events import register_events
from sagas.memory_extraction.extractors import Extractor
from sagas.reextraction import register_reextraction_events
from workflows import WORKFLOWS

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    return register_reextraction_events(register_forget_events(register_events(SchemaRegistry())))


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool to the event store's database (appends skip its reset: :mod:`eventstore.pool`).

    :raises DatabaseUnreachable: the database cannot be reached.
    """
    dsn = settings.require_database_url()
    _quiet_pool_floor()
    try:
        return await create_event_store_pool(
            dsn, min_size=min_size, max_size=max_size, server_settings={"application_name": "memsaga"}
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(dsn, exc) from exc


def _floor_retry(record: logging.LogRecord) -> bool:
    """False for asyncpg's "Failed to restore the pool connection floor" (a traceback per retry)."""
    return not str(record.msg).startswith("Failed to restore the pool connection floor")


def _quiet_pool_floor() -> None:
    """Drop asyncpg's per-retry tracebacks while PostgreSQL is away: the roles report an outage once."""
    logger = logging.getLogger("asyncpg.pool")
    if _floor_retry not in logger.filters:
        logger.addFilter(_floor_retry)


def master_key(settings: Settings) -> MasterKey:
    """The configured master key (docs/privacy.md).

    :raises MasterKeyMissing: none is configured.
    :raises InvalidMasterKey: it is not base64 of 32 bytes, or its file cannot be read.
    """
    text, path = settings.master_key_source()
    if text is not None:
        return MasterKey.from_text(text, source="MEMSAGA_MASTER_KEY")
    if path is not None:
        return MasterKey.from_file(path)
    raise MasterKeyMissing(str(settings.state_dir / MASTER_KEY_FILE))


async def check_master_key(store: PostgresEventStore) -> None:
    """Refuse to run with a master key that did not wrap the stored data keys.

    :raises WrongMasterKey: it did not (the message says which variables to fix).
    """
    if store.vault is not None:
        await store.vault.keyring.check_master()


def build_stores(pool: asyncpg.Pool, settings: Settings) -> tuple[PostgresEventStore, PostgresBlobStore]:
    """The event store and blob store over one pool, sealing personal data with users' keys.

    :raises MasterKeyMissing, InvalidMasterKey: see :func:`master_key`.
    """
    registry = build_registry()
    keyring = KeyRing(pool, master_key(settings))
    store = PostgresEventStore(
        pool, registry, max_payload_bytes=settings.max_payload_bytes, vault=Vault(registry, keyring)
    )
    return store, PostgresBlobStore(pool, keyring)


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
    """A worker running every memsaga workflow and the saga's activities (and, over a store that
    seals, the forget saga's) on ``task_queue`` (counting their attempts:
    :class:`activities.metrics.AttemptMetrics`)."""
    every: list[Callable[..., Any]] = list(activities.all())
    every += ReextractionActivities(
        activities.store, activities.blobs, activities.index, activities.extractors, activities.embedders
    ).all()
    store = activities.store
    if isinstance(store, PostgresEventStore) and store.vault is not None:  # forgetting needs the keys
        every += ForgettingActivities(store, store.vault.keyring, client).all()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=every,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=[AttemptMetrics()],
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
        replicas=settings.stream_replicas(),
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
        replicas=settings.stream_replicas(),
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
async def services(
    settings: Settings, *, with_nats: bool, name: str = "memsaga", stop: asyncio.Event | None = None
) -> AsyncIterator[Services]:
    """Open PostgreSQL (and NATS); close them after.

    Without ``stop`` PostgreSQL must answer at once, and NATS is waited for as long as it takes.
    With ``stop`` (a long-running role) both are waited for with backoff until ``stop`` is set.

    :raises DatabaseUnreachable: PostgreSQL cannot be reached (only without ``stop``).
    :raises StoppedWhileWaiting: ``stop`` was set while a service was waited for.
    """
    if stop is None:
        pool = await create_pool(settings)
    else:
        pool = await wait_for_pool(settings, stop, role=name)
    nc = None
    try:
        if with_nats:
            nc = await (
                connect_nats(settings.require_nats_url(), name=name, connect_timeout=None)
                if stop is None
                else wait_for_nats(settings, stop, role=name)
            )
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


class StoppedWhileWaiting(MemsagaError):
    """SIGINT or SIGTERM arrived while a role waited for a service: it stops, having done nothing."""

    def __init__(self, role: str, service: str) -> None:
        self.role = role
        self.service = service
        super().__init__(f"{role} stopped while waiting for {service}")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff between attempts to reach a service."""

    initial: float = 0.5
    maximum: float = 10.0


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


async def wait_for(
    attempt: Callable[[], Awaitable[T]],
    *,
    role: str,
    service: str,
    address: str,
    retried: tuple[type[BaseException], ...],
    stop: asyncio.Event,
    backoff: Backoff = Backoff(),
) -> T:
    """``attempt()`` until it succeeds, waiting with backoff after each ``retried`` error.

    Logs one line when the wait begins and one when the service answers, never one per attempt.

    :raises StoppedWhileWaiting: ``stop`` was set first (an attempt in flight is cancelled).
    """
    delay = backoff.initial
    waited = False
    while True:
        if stop.is_set():
            raise StoppedWhileWaiting(role, service)
        task = asyncio.ensure_future(attempt())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise StoppedWhileWaiting(role, service)
        try:
            result = task.result()
        except retried as exc:
            if not waited:
                log.warning(
                    "%s: waiting for %s at %s (%s); retrying with backoff up to %gs",
                    role,
                    service,
                    address,
                    _reason(exc),
                    backoff.maximum,
                )
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, backoff.maximum)
            continue
        if waited:
            log.info("%s: connected to %s at %s", role, service, address)
        return result


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, MemsagaError) and exc.__cause__ is not None else exc
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


async def wait_for_pool(settings: Settings, stop: asyncio.Event, *, role: str) -> asyncpg.Pool:
    """:func:`create_pool`, waiting (with backoff) while PostgreSQL does not answer; for a role,
    so it refuses a server that can lose acknowledged commits (:mod:`memsaga.doctor.durability`).

    :raises StoppedWhileWaiting: ``stop`` was set first.
    :raises UnsafePostgres: fsync or synchronous_commit is off and ``allow_unsafe_postgres`` unset.
    """
    address = redact(settings.require_database_url())
    pool = await wait_for(
        lambda: create_pool(settings),
        role=role,
        service="PostgreSQL",
        address=address,
        retried=(DatabaseUnreachable,),
        stop=stop,
    )
    try:
        unsafe = await require_durable(pool, role=role, allow_unsafe=settings.allow_unsafe_postgres)
    except BaseException:
        await pool.close()
        raise
    if unsafe:
        names = ", ".join(f"{s.name}=off" for s in unsafe)
        log.warning("%s: PostgreSQL runs with %s, allowed by %s (a benchmark)", role, names, ALLOW_VARIABLE)
    return pool


async def wait_for_nats(settings: Settings, stop: asyncio.Event, *, role: str) -> NATS:
    """A NATS connection that reconnects forever, once the server accepts TCP connections.

    Until then it waits with backoff; the client's own reconnects take over after that.

    :raises StoppedWhileWaiting: ``stop`` was set first.
    """
    url = settings.require_nats_url()
    addresses = []
    for server in server_urls(url):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            addresses.append((parts.hostname or "127.0.0.1", parts.port or 4222))
        except ValueError:  # not a port: nats-py will say what is wrong with the URL
            return await connect_nats(url, name=role, connect_timeout=None)

    async def listening() -> None:
        """Returns once one of the servers accepts a TCP connection (a cluster may miss some)."""
        failure: BaseException = OSError("no NATS server named")
        for host, port in addresses:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5.0)
            except (OSError, TimeoutError) as exc:
                failure = exc
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        raise failure

    address = ",".join(redact(server) for server in server_urls(url))
    await wait_for(
        listening, role=role, service="NATS", address=address, retried=(OSError, TimeoutError), stop=stop
    )
    connecting = partial(connect_nats, url, name=role, connect_timeout=None)
    return await wait_for(
        connecting, role=role, service="NATS", address=address, retried=(NatsUnavailable,), stop=stop
    )
