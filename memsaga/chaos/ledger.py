"""The chaos run's ledger: what it asked for (sagas, faults) and what it then saw.

The checks judge the deployment against this record, never against what the deployment
says about itself alone.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Literal

from pydantic import BaseModel

SagaKind = Literal["plain", "approve", "reject", "failing"]
"""``plain``: nothing to review; ``approve`` / ``reject``: a sensitive fact, reviewed and
approved or rejected; ``failing``: its embedder's endpoint is closed, so it compensates."""

EXPECTED: dict[SagaKind, str] = {
    "plain": "completed",
    "approve": "completed",
    "reject": "compensated",
    "failing": "compensated",
}
"""The status each kind must end with in the ``extractions`` read model."""


class SagaRecord(BaseModel):
    """One saga the run started."""

    workflow_id: str
    kind: SagaKind
    user_id: str
    text: str
    started_at: float | None = None
    """Seconds since the run began, once Temporal accepted the start."""
    decided: bool = False
    """Whether the review decision was delivered (``approve`` / ``reject`` only)."""
    start_error: str | None = None
    """Why the start or the decision could not be delivered, when it could not (a lost request)."""
    status: str | None = None
    """The last status seen in the ``extractions`` read model."""
    terminal_at: float | None = None
    """Seconds since the run began when a terminal status was first seen."""

    @property
    def expected(self) -> str:
        """The terminal status this saga must reach."""
        return EXPECTED[self.kind]


class FaultRecord(BaseModel):
    """One fault the run injected."""

    index: int
    kind: str
    target: str
    detail: str
    started_at: float
    ended_at: float | None = None
    fired: bool | None = None
    """For a failpoint: whether the process died on it (None: not a failpoint, or not known)."""


class Ledger:
    """Every saga and fault of one run, with times relative to its start."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.sagas: dict[str, SagaRecord] = {}
        self.faults: list[FaultRecord] = []

    def now(self) -> float:
        """Seconds since the run began."""
        return round(time.monotonic() - self.began, 3)

    def planned(self, saga: SagaRecord) -> None:
        """Record a saga before it is started."""
        self.sagas[saga.workflow_id] = saga

    def fault(self, kind: str, target: str, detail: str) -> FaultRecord:
        """Record a fault as it begins."""
        record = FaultRecord(
            index=len(self.faults), kind=kind, target=target, detail=detail, started_at=self.now()
        )
        self.faults.append(record)
        return record

    def faults_by_kind(self) -> dict[str, int]:
        """How many faults of each kind were injected."""
        return dict(sorted(Counter(f.kind for f in self.faults).items()))

    def sagas_by_outcome(self) -> dict[str, int]:
        """How many sagas ended with each status (``open`` for those that did not end)."""
        outcomes: Counter[str] = Counter(
            s.status if s.status is not None and s.terminal_at is not None else "open"
            for s in self.sagas.values()
        )
        return dict(sorted(outcomes.items()))

    def last_fault_end(self) -> float:
        """When the last fault ended (0 without faults)."""
        return max((f.ended_at or f.started_at for f in self.faults), default=0.0)
