"""What every benchmark gets: the services (from :class:`Settings`), sizes, fresh databases,
unique names, progress and the memory sampler."""

from __future__ import annotations

import asyncio
import os
import platform
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

import asyncpg
import nats
import psutil
from opentelemetry import trace
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import RPCError

from bench.dataset import fill_store
from bench.harness import MemorySampler, NoProgress, Progress, listening_pid
from bench.results_model import Machine
from eventstore import PostgresEventStore, migrate
from memsaga.bootstrap import MIGRATION_SOURCES, build_stores, create_pool
from memsaga.devstack.databases import DatabaseFactory
from memsaga.devstack.temporal import connect as connect_temporal
from memsaga.settings import Settings
from projections.stream import server_urls


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; ``--quick`` shrinks all of it."""

    rounds: int = 5
    # Per round and writer setup: rounds of a second or two per side, as shorter ones were left to
    # the machine's drift (3,000 single events and 100 batches per round: one ratio moved by up
    # to 0.17 between two runs).
    append_events: int = 6000  # single-event appends
    append_batches: int = 300  # of batch_size events
    batch_size: int = 100
    append_seed_events: int = 20_000  # history in the stores before appends are timed
    replay_events: int = 1_000_000
    replay_rounds: int = 3
    relay_events: int = 100_000
    relay_rounds: int = 3
    catchup_events: int = 100_000
    catchup_rounds: int = 3
    rebuild_events: int = 1_000_000
    rebuild_rounds: int = 1
    e2e_rate: float = 1000.0  # events/s, steady (the p99 target is stated at 1,000)
    e2e_seconds: float = 30.0
    sagas: int = 300
    saga_rounds: int = 3
    recall_user_small: int = 10_000  # memories of the one user of the first speed data set
    recall_user_large: int = 100_000
    recall_users: int = 1_000  # users of the third data set
    recall_per_user: int = 1_000
    recall_questions: int = 200  # timed per side and data set
    recall_text_pool: int = 100_000  # distinct synthetic texts embedded (rows beyond reuse them)

    @classmethod
    def quick(cls) -> Sizes:
        """Seconds in all: a smoke check of every benchmark, not a measurement to quote."""
        return cls(
            rounds=2,
            append_events=200,
            append_batches=10,
            append_seed_events=2_000,
            replay_events=5_000,
            replay_rounds=2,
            relay_events=2_000,
            relay_rounds=2,
            catchup_events=2_000,
            catchup_rounds=1,
            rebuild_events=5_000,
            rebuild_rounds=1,
            e2e_rate=200.0,  # a smoke check: the shared CI machine need not sustain 1,000/s
            e2e_seconds=3.0,
            sagas=10,
            saga_rounds=1,
            recall_user_small=300,
            recall_user_large=1_000,
            recall_users=10,
            recall_per_user=200,
            recall_questions=20,
            recall_text_pool=2_000,
        )

    def with_events(self, events: int) -> Sizes:
        """Sizes with the replay and rebuild data set at ``events`` (relay and catch-up at most that)."""
        return replace(
            self,
            replay_events=events,
            rebuild_events=events,
            relay_events=min(self.relay_events, events),
            catchup_events=min(self.catchup_events, events),
        )

    def as_dict(self) -> dict[str, int | float]:
        """For the results file."""
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    """A database holding ``events`` saga-shaped events at positions 1..events (shared by
    replay, relay and projections; the projections benchmark appends more at the end)."""

    dsn: str
    events: int
    next_saga: int


@dataclass
class BenchContext:
    """Services and helpers shared by the benchmarks of one run."""

    settings: Settings
    sizes: Sizes
    progress: Progress = field(default_factory=NoProgress)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sampler: MemorySampler = field(default_factory=MemorySampler)
    _names: int = 0
    _dataset: Dataset | None = None
    _cleanup: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def dataset(self) -> Dataset:
        """The shared bulk data set (filled at the first call, dropped by :meth:`close`)."""
        if self._dataset is None:
            events = max(self.sizes.replay_events, self.sizes.rebuild_events, self.sizes.relay_events)
            dsn = await self._cleanup.enter_async_context(self.database())
            self.progress.start(f"filling the data set ({events:,} events)", events)
            async with self.store(dsn) as store:
                next_saga = await fill_store(store.pool, events, on_events=self.progress.advance)
                count = await store.head_position()
            self._dataset = Dataset(dsn, count, next_saga)
        return self._dataset

    async def close(self) -> None:
        """Drop what :meth:`dataset` created."""
        self._dataset = None
        await self._cleanup.aclose()

    @property
    def admin_url(self) -> str:
        """The configured database URL: fresh databases are created through it."""
        return self.settings.require_database_url()

    def unique(self, kind: str) -> str:
        """A name no other run or benchmark uses (JetStream streams, task queues)."""
        self._names += 1
        return f"BENCH_{kind.upper()}_{self.run_id}_{self._names}"

    def unique_stream(self, kind: str) -> tuple[str, str]:
        """A new JetStream stream name and its own subject prefix (streams may not share subjects)."""
        name = self.unique(kind)
        return name, name.lower()

    @asynccontextmanager
    async def database(self, *, migrated: bool = True) -> AsyncIterator[str]:
        """A new database on the configured server (memsaga's schema applied), dropped afterwards."""
        factory = DatabaseFactory(self.admin_url)
        dsn = await factory.create("memsaga_bench")
        try:
            if migrated:
                conn = await asyncpg.connect(dsn)
                try:
                    await migrate(conn, MIGRATION_SOURCES)
                finally:
                    await conn.close()
            yield dsn
        finally:
            await factory.drop(dsn)

    @asynccontextmanager
    async def store(self, dsn: str, *, max_size: int = 10) -> AsyncIterator[PostgresEventStore]:
        """memsaga's event store on ``dsn``, built by the composition root."""
        settings = self.settings.model_copy(update={"database_url": dsn})
        pool = await create_pool(settings, min_size=1, max_size=max_size)
        try:
            store, _ = build_stores(pool, settings)
            yield store
        finally:
            await pool.close()

    async def locate_services(self) -> None:
        """Find the local processes of PostgreSQL, NATS and Temporal for the memory sampler."""
        processes: dict[str, int] = {}
        try:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:  # our backend's parent is the postmaster (ask while the backend still lives)
                parent = psutil.Process(int(await conn.fetchval("SELECT pg_backend_pid()"))).parent()
            finally:
                await conn.close()
            if parent is not None and "postgres" in parent.name():
                processes["postgres"] = parent.pid
        except (psutil.Error, OSError, asyncpg.PostgresError):
            pass  # a remote server: its memory is not ours to see
        for name, address in (("nats", self.settings.nats_url), ("temporal", self.settings.temporal_address)):
            port = _port(address)
            pid = listening_pid(port) if port else None
            if pid is not None:
                processes[name] = pid
        self.sampler.processes = processes

    async def machine(self) -> Machine:
        """The machine and service versions, for the results file."""
        load = os.getloadavg()
        info = Machine(
            cpus=os.cpu_count() or 0,
            memory_gb=round(psutil.virtual_memory().total / 1024**3, 1),
            python=platform.python_version(),
            platform=platform.platform(),
            load_average_at_start=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            tracing=type(trace.get_tracer_provider()).__name__,
        )
        try:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                info.postgres = str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            pass
        if self.settings.nats_url:  # resolved by bench.runner from the local stack when unset
            try:
                nc = await asyncio.wait_for(nats.connect(server_urls(self.settings.nats_url)), 5)
                info.nats = str(nc._server_info.get("version", ""))
                await nc.close()
            except (OSError, TimeoutError, nats.errors.Error):
                pass
        if self.settings.temporal_address:
            try:
                client = await connect_temporal(self.settings.temporal_address, timeout=5.0)
                system = await client.workflow_service.get_system_info(GetSystemInfoRequest())
                info.temporal = system.server_version
            except (RuntimeError, RPCError, TimeoutError):
                pass
        return info


def _port(address: str | None) -> int | None:
    if not address:
        return None
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.port
