"""What ``memsaga chaos`` reports (the JSON shape; documented in docs/reliability.md, *Chaos and soak*)."""

from __future__ import annotations

from pydantic import BaseModel

from memsaga.chaos.ledger import FaultRecord
from memsaga.verify import VerifyReport


class ChaosViolation(BaseModel):
    """One thing that must not happen and did."""

    check: str
    subject: str
    message: str


class CheckResult(BaseModel):
    """One check: passed or not, and what it looked at."""

    name: str
    ok: bool
    detail: str


class ChaosReport(BaseModel):
    """A whole chaos run: what was asked, what happened, each check."""

    ok: bool
    seed: int
    sagas: int
    replicas: dict[str, int]
    """How many processes of each role ran: ``{"worker": 2, "relay": 1, "projector": 2}``."""
    faults_requested: int
    seconds: float
    """Wall time of the run, stack start and checks included."""
    phases: dict[str, float]
    """Seconds spent starting the stack, under faults, settling, and checking."""
    faults_by_kind: dict[str, int]
    failpoints: dict[str, int]
    """Failpoint faults by outcome: ``fired`` (the process died there) or ``not_fired``."""
    sagas_by_outcome: dict[str, int]
    settled_after_last_fault: float | None
    """Seconds from the end of the last fault until every saga was terminal (None: some never were)."""
    checks: list[CheckResult]
    violations: list[ChaosViolation]
    faults: list[FaultRecord]
    verify: VerifyReport | None
    state_dir: str | None
    """Where the run's data and logs are (kept after a violation or with --keep), else None."""
