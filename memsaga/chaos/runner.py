"""One chaos run: its own stack, the sagas, the faults, then the checks (docs/reliability.md).

Everything it starts is stopped in a ``finally``: on success, on a violation, on an error and
on Ctrl-C or SIGTERM (``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
from temporalio.client import Client
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_stores, create_pool
from memsaga.chaos.checks import (
    Findings,
    add_verify,
    check_crashes,
    check_effects,
    check_requests,
    check_settled,
)
from memsaga.chaos.errors import ChaosStopped
from memsaga.chaos.faults import LONG_OUTAGE, Injector, Supervisor, schedule
from memsaga.chaos.ledger import FaultRecord, Ledger
from memsaga.chaos.report import ChaosReport
from memsaga.chaos.stack import DEFAULT_REPLICAS, ChaosStack
from memsaga.chaos.workload import plan_sagas, start_all
from memsaga.client import connect
from memsaga.verify import Limits, VerifyReport, verify
from memsaga.verify.positions import check_positions
from memsaga.verify.sagas import ALL_ROWS, TERMINAL
from projections import PROJECTIONS, ProjectionNotInitialized, list_extractions

ESTIMATED_SECONDS = {LONG_OUTAGE: 24.0, "kill_temporal": 8.0, "nats_pause": 5.0, "postgres_immediate": 4.0}
"""Rough length of a fault (others: 2 s), to spread the sagas' starts over the faults."""
GAP = (0.5, 2.5)
"""Seconds between two faults, drawn at random."""
STARTS_WITHIN = 0.7
"""The share of the faults' estimated time over which the sagas are started."""
CATCH_UP_TIMEOUT = 120.0
UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ProjectionNotInitialized)
"""What reading the read models may raise while PostgreSQL is down or before the first build."""


def quiet_temporal_core() -> None:
    """Temporal's core logs a warning on stdout for every call it retries; faults make many, and
    stdout carries the report (``--json``): forward only its errors, to Python logging (stderr)."""
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("memsaga.chaos.temporal")),
    )
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=logging_config)), error_if_already_set=False
    )


class Reporter(Protocol):
    """Where a run tells how it goes (a progress display, a log, nothing)."""

    def phase(self, name: str) -> None:
        """A new phase begins (starting the stack, faults, settling, checking)."""

    def fault(self, record: FaultRecord, done: int, total: int) -> None:
        """A fault was injected."""

    def sagas(self, started: int, terminal: int, total: int) -> None:
        """Where the sagas stand."""


class Quiet:
    """A reporter that says nothing."""

    def phase(self, name: str) -> None:
        """Nothing."""

    def fault(self, record: FaultRecord, done: int, total: int) -> None:
        """Nothing."""

    def sagas(self, started: int, terminal: int, total: int) -> None:
        """Nothing."""


@dataclass(frozen=True)
class ChaosOptions:
    """What to run."""

    sagas: int
    faults: int
    seed: int
    settle: float = 60.0
    """Every saga must be terminal this long after the last fault."""
    keep: bool = False
    """Keep the run's directory (data and logs) even when every check passed."""
    replicas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_REPLICAS))
    """How many processes of each role run (``worker``, ``relay``, ``projector``)."""


async def run_chaos(
    options: ChaosOptions, *, stop: asyncio.Event, reporter: Reporter | None = None
) -> ChaosReport:
    """Run it; the report says what was injected and what each check found.

    :raises ChaosStopped: ``stop`` was set before the checks.
    :raises ChaosError: the run could not go on (a service did not come back).
    :raises DevstackError: the stack did not start.
    """
    quiet_temporal_core()
    root = Path(tempfile.mkdtemp(prefix="memsaga-chaos-"))
    run = _Run(options, root, reporter or Quiet(), stop)
    report: ChaosReport | None = None
    try:
        report = await run.until_stopped()
        return report
    finally:
        await asyncio.to_thread(run.stack.close)
        if report is not None and report.ok and not options.keep:
            shutil.rmtree(root, ignore_errors=True)


class _Run:
    def __init__(self, options: ChaosOptions, root: Path, reporter: Reporter, stop: asyncio.Event) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.stack = ChaosStack(root)
        self.ledger = Ledger()
        self.supervisor = Supervisor(self.stack, self.ledger)
        self.reporter = reporter
        self.stop = stop
        self.phases: dict[str, float] = {}
        self.settled: float | None = None
        self.background: list[asyncio.Task[None]] = []

    def _raise_if_dead(self) -> None:
        """A background task (supervisor, observer) that failed fails the run."""
        for task in self.background:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error

    async def until_stopped(self) -> ChaosReport:
        body = asyncio.ensure_future(self.run())
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([body, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not body.done():
            body.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body
            raise ChaosStopped(str(self.stack.root))
        return body.result()

    async def _phase(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self.reporter.phase(name)
        started = time.monotonic()
        await work()
        self.phases[name] = round(time.monotonic() - started, 1)

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        await self._phase("stack", self._start)
        settings = self.stack.settings()
        client = await connect(settings)
        pool = await create_pool(settings, min_size=1, max_size=4)
        store, _ = build_stores(pool, settings)
        background = self.background = [
            asyncio.create_task(self.supervisor.run(self.stop)),
            asyncio.create_task(self._observe(pool)),
        ]
        try:
            await self._phase("faults", lambda: self._faults(client))
            await self._phase("settle", self._settle)
            self.supervisor.tick()
            findings = Findings()
            verified: list[VerifyReport] = []

            async def checks() -> None:
                await self._catch_up(pool, store)
                verified.append(await verify(settings, limits=Limits(stuck_after=0.0, max_lag=0.0)))
                await self._judge(pool, store, findings, verified[0])

            await self._phase("checks", checks)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await pool.close()
        return self._report(findings, verified[0], time.monotonic() - started)

    async def _start(self) -> None:
        await self.stack.start_services()
        self.stack.start_roles(self.options.replicas)

    async def _faults(self, client: Client) -> None:
        kinds = schedule(self.options.faults, self.rng)
        plans = plan_sagas(self.options.sagas, self.rng, f"{self.options.seed}-{int(time.time())}")
        estimate = sum(ESTIMATED_SECONDS.get(k, 2.0) + sum(GAP) / 2 for k in kinds)
        # Starts spread over the first STARTS_WITHIN of the faults: the estimate runs long (the
        # soak's 500 faults took 1,600 s against 2,000 estimated), and the last fault waits for them.
        interval = min(2.0, max(0.02, estimate * STARTS_WITHIN / max(1, len(plans))))
        settings = self.stack.settings()
        starter = asyncio.create_task(
            start_all(client, settings, plans, self.ledger, interval=interval, stop=self.stop)
        )
        injector = Injector(self.stack, self.ledger, self.supervisor, self.rng)
        await asyncio.sleep(min(3.0, interval * 3))
        for i, kind in enumerate(kinds):
            await asyncio.sleep(self.rng.uniform(*GAP))
            if i == len(kinds) - 1:
                if not starter.done():
                    started = sum(saga.started_at is not None for saga in self.ledger.sagas.values())
                    self.reporter.phase(
                        f"last fault waits for every saga to start ({started} of {len(plans)} started)"
                    )
                await starter  # every saga under way before the last fault
            record = await injector.inject(kind)
            self._raise_if_dead()
            self.reporter.fault(record, i + 1, len(kinds))
        await starter
        # Armed failpoints get their window, then the roles run plain.
        while self.supervisor.armed and self.ledger.now() < max(
            a.until for a in self.supervisor.armed.values()
        ):
            await asyncio.sleep(0.3)
        self.supervisor.disarm_all()

    async def _settle(self) -> None:
        deadline = self.ledger.last_fault_end() + self.options.settle
        while self.ledger.now() < deadline + 5.0:
            if all(s.terminal_at is not None for s in self.ledger.sagas.values()):
                last = max((s.terminal_at or 0.0) for s in self.ledger.sagas.values())
                self.settled = round(max(0.0, last - self.ledger.last_fault_end()), 1)
                return
            self._raise_if_dead()
            await asyncio.sleep(0.5)

    async def _observe(self, pool: asyncpg.Pool) -> None:
        """Poll the extractions read model: each saga's status, and when it became terminal."""
        while True:
            with contextlib.suppress(*UNAVAILABLE):
                rows = {e.correlation_id: e.status for e in await list_extractions(pool, limit=ALL_ROWS)}
                for saga in self.ledger.sagas.values():
                    status = rows.get(saga.workflow_id)
                    saga.status = status
                    if status in TERMINAL and saga.terminal_at is None:
                        saga.terminal_at = self.ledger.now()
                    if status not in TERMINAL:
                        saga.terminal_at = None
                started = sum(s.started_at is not None for s in self.ledger.sagas.values())
                terminal = sum(s.terminal_at is not None for s in self.ledger.sagas.values())
                self.reporter.sagas(started, terminal, self.options.sagas)
            await asyncio.sleep(1.0)

    async def _catch_up(self, pool: asyncpg.Pool, store: PostgresEventStore) -> None:
        """Until the relay and every projection have handled the store's head (or time is up)."""
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        stream = self.stack.settings().nats_stream
        while time.monotonic() < deadline:
            positions = await check_positions(pool, store, stream, PROJECTIONS.values())
            if positions.relay.lag_events == 0 and all(p.lag_events == 0 for p in positions.projections):
                return
            await asyncio.sleep(0.5)

    async def _judge(
        self, pool: asyncpg.Pool, store: PostgresEventStore, findings: Findings, verified: VerifyReport
    ) -> None:
        check_requests(self.ledger, findings)
        check_settled(self.ledger, self.options.settle, findings)
        await check_effects(pool, store, self.ledger, findings)
        add_verify(verified, findings)
        check_crashes(self.supervisor.crashes, findings)

    def _report(self, findings: Findings, verified: VerifyReport, seconds: float) -> ChaosReport:
        failpoints = [f for f in self.ledger.faults if f.kind == "failpoint"]
        ok = not findings.violations
        return ChaosReport(
            ok=ok,
            seed=self.options.seed,
            sagas=self.options.sagas,
            replicas=self.options.replicas,
            faults_requested=self.options.faults,
            seconds=round(seconds, 1),
            phases=self.phases,
            faults_by_kind=self.ledger.faults_by_kind(),
            failpoints={
                "fired": sum(f.fired is True for f in failpoints),
                "not_fired": sum(f.fired is not True for f in failpoints),
            },
            sagas_by_outcome=self.ledger.sagas_by_outcome(),
            settled_after_last_fault=self.settled,
            checks=findings.checks,
            violations=findings.violations,
            faults=self.ledger.faults,
            verify=verified,
            state_dir=None if ok and not self.options.keep else str(self.stack.root),
        )
