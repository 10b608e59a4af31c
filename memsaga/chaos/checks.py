"""The checks of a chaos run, from its ledger: lost requests, wrong outcomes, duplicate effects,
sagas that did not settle, crashed roles; and ``memsaga verify``'s invariants.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import asyncpg

from eventstore import PostgresEventStore
from memsaga.chaos.faults import Crash
from memsaga.chaos.ledger import Ledger
from memsaga.chaos.report import ChaosViolation, CheckResult
from memsaga.verify import VerifyReport
from projections.memories import list_memories
from sagas.memory_extraction import events as ev

VERIFY_CHECKS = {
    "events in JetStream": ("stream", None),
    "read models = rebuild": ("read_models", None),
    "relay and projection lag": ("lag", ("relay_lag", "projection_lag")),
    "parked events": ("parked", ("parked",)),
    "no saga open (Temporal)": ("sagas", None),
}
"""Chaos check name -> what it shows, and the verify violation kinds it reports (None: all of its check)."""
_VERIFY_CHECK = {"lag": "positions", "parked": "positions"}


class Findings:
    """Check results and violations, collected."""

    def __init__(self) -> None:
        self.checks: list[CheckResult] = []
        self.violations: list[ChaosViolation] = []

    def add(self, name: str, detail: str, violations: list[ChaosViolation]) -> None:
        """One check: ok when it found no violation."""
        self.checks.append(CheckResult(name=name, ok=not violations, detail=detail))
        self.violations += violations


def check_requests(ledger: Ledger, findings: Findings) -> None:
    """Every request reached a terminal status in the read model, the one its kind must reach."""
    lost = [
        ChaosViolation(
            check="requests lost",
            subject=s.workflow_id,
            message=f"{s.kind} saga: {_where(s.status)}"
            + (f" (its start failed: {s.start_error})" if s.start_error else ""),
        )
        for s in ledger.sagas.values()
        if s.terminal_at is None
    ]
    findings.add(
        "requests lost", f"{len(ledger.sagas)} requests, {len(lost)} not terminal in `extractions`", lost
    )
    wrong = [
        ChaosViolation(
            check="outcomes",
            subject=s.workflow_id,
            message=f"{s.kind} saga ended {s.status}, expected {s.expected}",
        )
        for s in ledger.sagas.values()
        if s.terminal_at is not None and s.status != s.expected
    ]
    findings.add("outcomes", "each kind ends as it must (completed / compensated)", wrong)


def _where(status: str | None) -> str:
    return "not in the extractions read model" if status is None else f"still {status}"


def check_settled(ledger: Ledger, settle: float, findings: Findings) -> None:
    """Every saga terminal within ``settle`` seconds of the last fault's end."""
    deadline = ledger.last_fault_end() + settle
    late = [
        ChaosViolation(
            check="settled",
            subject=s.workflow_id,
            message=(
                "never terminal"
                if s.terminal_at is None
                else f"terminal {s.terminal_at - ledger.last_fault_end():.1f}s after the last fault"
            ),
        )
        for s in ledger.sagas.values()
        if s.terminal_at is None or s.terminal_at > deadline
    ]
    findings.add("settled", f"every saga terminal within {settle:.0f}s of the last fault", late)


def check_crashes(crashes: list[Crash], findings: Findings) -> None:
    """No role exited unless a fault killed it."""
    found = [
        ChaosViolation(check="roles survived", subject=c.role, message=f"exited with {c.code} at {c.at:.1f}s")
        for c in crashes
    ]
    findings.add("roles survived", "no role exited but by a fault", found)


async def check_effects(
    pool: asyncpg.Pool, store: PostgresEventStore, ledger: Ledger, findings: Findings
) -> None:
    """No effect twice: one ``MemoryCreated`` per fact of a saga and per memory stream, and the read
    model holds exactly the memories each saga left (its created ones when completed, none else)."""
    created: dict[str, Counter[str]] = defaultdict(Counter)  # correlation -> content hash -> count
    per_stream: Counter[str] = Counter()
    memories: dict[str, set[str]] = defaultdict(set)  # correlation -> memory ids
    async for batch in store.read_all(after_position=0):
        for event in batch:
            if event.event_type == ev.MemoryCreated.event_type:
                created[event.correlation_id][str(event.payload["content_hash"])] += 1
                per_stream[event.stream_id] += 1
                memories[event.correlation_id].add(str(event.payload["memory_id"]))
    found = [
        ChaosViolation(check="duplicate effects", subject=c, message=f"fact {h[:12]} created {n} times")
        for c, hashes in created.items()
        for h, n in hashes.items()
        if n > 1
    ]
    found += [
        ChaosViolation(check="duplicate effects", subject=s, message=f"{n} MemoryCreated in one stream")
        for s, n in per_stream.items()
        if n > 1
    ]
    for saga in ledger.sagas.values():
        if saga.terminal_at is None:
            continue
        shown = {m.memory_id for m in await list_memories(pool, saga.user_id)}
        expected = memories[saga.workflow_id] if saga.status == "completed" else set()
        if shown != expected:
            found.append(
                ChaosViolation(
                    check="duplicate effects",
                    subject=saga.workflow_id,
                    message=f"the memories read model shows {len(shown)} memories, expected {len(expected)}",
                )
            )
    facts = sum(len(h) for h in created.values())
    findings.add("duplicate effects", f"{facts} facts stored, each once; read model as the store says", found)


def add_verify(report: VerifyReport, findings: Findings) -> None:
    """``memsaga verify``'s violations, one chaos check per invariant."""
    for name, (check, kinds) in VERIFY_CHECKS.items():
        found = [
            ChaosViolation(check=name, subject=v.subject, message=v.message)
            for v in report.violations
            if v.check == _VERIFY_CHECK.get(check, check) and (kinds is None or v.kind in kinds)
        ]
        findings.add(name, _verify_detail(report, check), found)


def _verify_detail(report: VerifyReport, check: str) -> str:
    if check == "stream" and report.stream is not None:
        return f"{report.stream.checked} events, {report.stream.missing} missing from {report.stream.stream}"
    if check == "read_models":
        return ", ".join(f"{r.projection} {'=' if r.equal else '≠'} rebuild" for r in report.read_models)
    if check == "lag" and report.positions is not None:
        p = report.positions
        lags = ", ".join(f"{x.name} {x.lag_events}" for x in p.projections)
        return f"events behind the head: relay {p.relay.lag_events}, {lags}"
    if check == "parked" and report.positions is not None:
        return ", ".join(f"{x.name} {x.parked}" for x in report.positions.projections)
    if check == "sagas" and report.sagas is not None:
        return f"{report.sagas.running} open in the read model, {len(report.sagas.stuck)} stuck"
    return "not checked"
