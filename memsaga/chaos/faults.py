"""The faults a chaos run injects, chosen at random (seeded), and the supervisor that brings
every role back after it died.

| kind | what it does |
|---|---|
| ``kill_worker``, ``kill_relay``, ``kill_projector`` | SIGKILL one process of it; back 0.2–2 s later |
| ``kill_nats``, ``kill_temporal`` | SIGKILL the server; restarted on its port and data 0.2–2 s later |
| ``postgres_immediate`` | ``pg_ctl stop -m immediate`` (a crash recovery follows), started 0.5–3 s later |
| ``postgres_outage`` | PostgreSQL stopped for 20–25 s (longer than the old 15 s step retry budget) |
| ``nats_pause`` | NATS frozen with SIGSTOP for 2–8 s, then SIGCONT |
| ``failpoint`` | a role's process restarted with ``MEMSAGA_FAILPOINTS=<name>=kill@N``: it dies there |
| ``double_delivery`` | one projector restarted with ``projector.deliver_twice=on`` for 5–15 s |

Where a role runs in several processes, each fault picks one of them at random. A failpoint
that has not fired within :data:`FAILPOINT_WINDOW` seconds is disarmed (the role
is restarted plain); builds without failpoints never fire them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass

from memsaga.chaos.ledger import FaultRecord, Ledger
from memsaga.chaos.stack import ROLES, ChaosStack

ROUND: tuple[str, ...] = (
    "kill_worker",
    "kill_relay",
    "kill_projector",
    "kill_nats",
    "kill_temporal",
    "postgres_immediate",
    "nats_pause",
    "failpoint",
    "double_delivery",
)
"""The kinds drawn in rounds (each once per round, in random order); ``postgres_outage`` is added
once per hundred faults (at least once)."""
LONG_OUTAGE = "postgres_outage"
FAILPOINTS: dict[str, tuple[str, ...]] = {
    "relay": ("relay.after_publish",),
    "projector": ("projector.after_commit",),
    "worker": ("activity.after_append", "compensation.after_first"),
}
FAILPOINT_WINDOW = 30.0
LONG_OUTAGE_SECONDS = (20.0, 25.0)


def schedule(count: int, rng: random.Random) -> list[str]:
    """``count`` fault kinds: one or more long PostgreSQL outages, the rest in shuffled rounds."""
    if count <= 0:
        return []
    outages = max(1, count // 100)
    kinds: list[str] = []
    while len(kinds) < count - outages:
        kinds += rng.sample(ROUND, len(ROUND))
    kinds = kinds[: count - outages]
    for _ in range(outages):  # never first: sagas should be under way when it comes
        kinds.insert(rng.randint(1, len(kinds)) if kinds else 0, LONG_OUTAGE)
    return kinds


@dataclass
class Armed:
    """A role running with failpoints until it dies on one or ``until`` passes."""

    record: FaultRecord
    until: float
    kill_expected: bool


@dataclass
class Crash:
    """A role that exited without being asked to (and without a failpoint armed)."""

    role: str
    code: int
    at: float


class Supervisor:
    """Restarts every role that died, unless a fault holds it down; watches armed failpoints."""

    def __init__(self, stack: ChaosStack, ledger: Ledger) -> None:
        self.stack = stack
        self.ledger = ledger
        self.held: set[str] = set()
        self.armed: dict[str, Armed] = {}
        self.crashes: list[Crash] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Check the roles every 0.3 s until ``stop``."""
        while not stop.is_set():
            self.tick()
            await asyncio.sleep(0.3)

    def tick(self) -> None:
        """Restart what died; disarm what expired."""
        now = self.ledger.now()
        for name, role in self.stack.roles.items():
            if name in self.held:
                continue
            code = role.exit_code()
            if code is not None:
                armed = self.armed.pop(name, None)
                if armed is not None and armed.kill_expected and code == -signal.SIGKILL:
                    armed.record.fired = True
                    armed.record.ended_at = now
                else:
                    if armed is not None:
                        self.release(armed)
                    self.crashes.append(Crash(name, code, now))
                role.start()
            elif name in self.armed and now > self.armed[name].until:
                role.kill()
                role.start()
                self.release(self.armed.pop(name))

    def release(self, armed: Armed) -> None:
        """The armed fault is over without its failpoint firing."""
        if armed.kill_expected:
            armed.record.fired = False
        armed.record.ended_at = self.ledger.now()

    def arm(
        self, role: str, failpoints: str, record: FaultRecord, *, seconds: float, kill_expected: bool
    ) -> None:
        """Restart ``role`` (SIGKILL) with ``MEMSAGA_FAILPOINTS=failpoints`` for ``seconds``."""
        previous = self.armed.pop(role, None)
        if previous is not None:
            self.release(previous)
        process = self.stack.roles[role]
        process.kill()
        process.start(failpoints)
        self.armed[role] = Armed(record, self.ledger.now() + seconds, kill_expected)

    def disarm_all(self) -> None:
        """Restart every armed role plain (the run's faults are over)."""
        for name, armed in list(self.armed.items()):
            self.stack.roles[name].kill()
            self.stack.roles[name].start()
            self.release(armed)
        self.armed.clear()


class Injector:
    """Injects one fault of a kind, recording it in the ledger; returns when it is over."""

    def __init__(self, stack: ChaosStack, ledger: Ledger, supervisor: Supervisor, rng: random.Random) -> None:
        self.stack = stack
        self.ledger = ledger
        self.supervisor = supervisor
        self.rng = rng

    async def inject(self, kind: str) -> FaultRecord:
        """Inject a fault of ``kind`` (see the module's table)."""
        if kind.startswith("kill_") and kind.removeprefix("kill_") in ROLES:
            return await self._kill_role(kind, self._one_of(kind.removeprefix("kill_")))
        if kind in ("kill_nats", "kill_temporal"):
            return await self._kill_service(kind, kind.removeprefix("kill_"))
        if kind == "postgres_immediate":
            return await self._postgres(kind, "immediate", self.rng.uniform(0.5, 3.0))
        if kind == LONG_OUTAGE:
            return await self._postgres(kind, "fast", self.rng.uniform(*LONG_OUTAGE_SECONDS))
        if kind == "nats_pause":
            return await self._pause_nats(kind)
        if kind == "failpoint":
            return self._failpoint(kind)
        if kind == "double_delivery":
            return self._double_delivery(kind)
        raise ValueError(f"unknown fault kind {kind!r}")

    def _one_of(self, role: str) -> str:
        """One process of ``role``, at random (the first when it runs alone)."""
        instances = self.stack.instances(role)
        return instances[0] if len(instances) == 1 else self.rng.choice(instances)

    def _end(self, record: FaultRecord) -> FaultRecord:
        record.ended_at = self.ledger.now()
        return record

    async def _kill_role(self, kind: str, role: str) -> FaultRecord:
        down = self.rng.uniform(0.2, 2.0)
        record = self.ledger.fault(kind, role, f"SIGKILL, restarted after {down:.1f}s")
        self.supervisor.held.add(role)
        try:
            armed = self.supervisor.armed.pop(role, None)
            if armed is not None:
                self.supervisor.release(armed)
            self.stack.roles[role].kill()
            await asyncio.sleep(down)
            self.stack.roles[role].start()
        finally:
            self.supervisor.held.discard(role)
        return self._end(record)

    async def _kill_service(self, kind: str, service: str) -> FaultRecord:
        down = self.rng.uniform(0.2, 2.0)
        record = self.ledger.fault(kind, service, f"SIGKILL, restarted on its port after {down:.1f}s")
        await self.stack.kill_service(service)
        await asyncio.sleep(down)
        await self.stack.restart_service(service)
        return self._end(record)

    async def _postgres(self, kind: str, mode: str, down: float) -> FaultRecord:
        record = self.ledger.fault(kind, "postgres", f"pg_ctl stop -m {mode}, down {down:.1f}s")
        await self.stack.stop_postgres(mode)
        await asyncio.sleep(down)
        await self.stack.restart_service("postgres")
        return self._end(record)

    async def _pause_nats(self, kind: str) -> FaultRecord:
        paused = self.rng.uniform(2.0, 8.0)
        record = self.ledger.fault(kind, "nats", f"SIGSTOP for {paused:.1f}s, then SIGCONT")
        pid = self.stack.pid("nats")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(paused)
        finally:
            os.kill(pid, signal.SIGCONT)
        return self._end(record)

    def _failpoint(self, kind: str) -> FaultRecord:
        role = self.rng.choice(sorted(FAILPOINTS))
        name = self.rng.choice(FAILPOINTS[role])
        role = self._one_of(role)
        spec = f"{name}=kill@{self.rng.randint(1, 5)}"
        record = self.ledger.fault(kind, role, f"MEMSAGA_FAILPOINTS={spec}")
        self.supervisor.arm(role, spec, record, seconds=FAILPOINT_WINDOW, kill_expected=True)
        return record

    def _double_delivery(self, kind: str) -> FaultRecord:
        seconds = self.rng.uniform(5.0, 15.0)
        spec = "projector.deliver_twice=on"
        projector = self._one_of("projector")
        record = self.ledger.fault(kind, projector, f"MEMSAGA_FAILPOINTS={spec} for {seconds:.1f}s")
        self.supervisor.arm(projector, spec, record, seconds=seconds, kill_expected=False)
        return record
