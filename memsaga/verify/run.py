"""``memsaga verify``: run every check against the configured deployment and list the violations."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client as NATS
from temporalio.client import Client

from memsaga.bootstrap import Services, services
from memsaga.client import connect
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from memsaga.verify.positions import check_positions
from memsaga.verify.rebuilds import check_read_model
from memsaga.verify.report import (
    PositionsCheck,
    ReadModelCheck,
    SagasCheck,
    StreamCheck,
    VerifyReport,
    Violation,
)
from memsaga.verify.sagas import check_sagas
from memsaga.verify.stream import check_stream
from projections import PROJECTIONS, Projection, ProjectionsError, connect_nats
from projections.subjects import stream_subjects


@dataclass(frozen=True)
class Limits:
    """When a lag or an open saga becomes a violation."""

    stuck_after: float = 600.0
    """A saga not terminal (and not waiting for a review) for longer, in seconds."""
    max_lag: float = 60.0
    """The oldest event the relay or a projection has not handled yet, in seconds."""


async def verify(
    settings: Settings,
    *,
    limits: Limits = Limits(),
    projections: Mapping[str, Projection] = PROJECTIONS,
) -> VerifyReport:
    """Every check, on the services ``settings`` name.

    :raises DatabaseUnreachable: PostgreSQL does not answer (nothing can be checked).
    """
    async with services(settings, with_nats=False, name="memsaga-verify") as svc:
        violations: list[Violation] = []
        positions = await check_positions(svc.pool, svc.store, settings.nats_stream, projections.values())
        violations += positions_violations(positions, limits)
        stream = await _stream(svc, positions.relay.position, violations)
        read_models = []
        for projection in projections.values():
            checked = await check_read_model(svc.pool, svc.store, projection, max_lag=limits.max_lag)
            read_models.append(checked)
            violations += read_model_violations(checked)
        sagas = await _sagas(svc, limits, violations)
    return VerifyReport(
        ok=not violations,
        checked_at=datetime.now(UTC),
        stream=stream,
        read_models=read_models,
        positions=positions,
        sagas=sagas,
        violations=violations,
    )


async def _stream(svc: Services, relayed_up_to: int, violations: list[Violation]) -> StreamCheck | None:
    s = svc.settings
    nc: NATS | None = None
    try:
        nc = await asyncio.wait_for(
            connect_nats(s.require_nats_url(), name="memsaga-verify", connect_timeout=5.0), 15
        )
        prefix = stream_subjects(s.subject_prefix)[0]
        checked = await check_stream(svc.store, nc.jetstream(), s.nats_stream, prefix, relayed_up_to)
    except (OSError, TimeoutError, nats.errors.Error, MemsagaError, ProjectionsError) as exc:
        violations.append(
            Violation(
                check="stream",
                kind="unchecked",
                subject=s.nats_stream,
                message=f"the stream could not be read: {type(exc).__name__}: {exc}",
                fix="check NATS with `memsaga stats`",
            )
        )
        return None
    finally:
        if nc is not None:
            await nc.close()
    violations += stream_violations(checked)
    return checked


async def _sagas(svc: Services, limits: Limits, violations: list[Violation]) -> SagasCheck | None:
    client: Client | None = None
    why: str | None = None
    try:
        client = await asyncio.wait_for(connect(svc.settings), 15)
    except (RuntimeError, TimeoutError, OSError) as exc:
        why = f"Temporal unreachable: {exc}"
    checked = await check_sagas(svc.pool, client, stuck_after=limits.stuck_after, why_no_temporal=why)
    violations += saga_violations(checked)
    return checked


def stream_violations(checked: StreamCheck) -> list[Violation]:
    """Events missing from JetStream (with the republish command), messages the store does not know."""
    found = [
        Violation(
            check="stream",
            kind="missing_in_stream",
            subject=f"positions {a}..{b}",
            message=f"events at positions {a}..{b} are in the event store but not in {checked.stream}",
            fix=command,
        )
        for (a, b), command in zip(checked.missing_ranges, checked.republish, strict=True)
    ]
    if checked.unknown:
        found.append(
            Violation(
                check="stream",
                kind="unknown_in_stream",
                subject=checked.stream,
                message=(
                    f"{checked.unknown} messages of {checked.stream} name events the store does not hold"
                ),
                fix="check that MEMSAGA_DATABASE_URL and MEMSAGA_NATS_STREAM name the same deployment",
            )
        )
    return found


def read_model_violations(checked: ReadModelCheck) -> list[Violation]:
    """A read model that differs from its rebuild, events it skipped."""
    found = []
    if not checked.equal:
        tables = ", ".join(
            f"{d.table} ({d.live_rows} rows live, {d.rebuilt_rows} rebuilt)"
            for d in checked.tables
            if not d.equal
        )
        found.append(
            Violation(
                check="read_models",
                kind="read_model_differs",
                subject=checked.projection,
                message=(
                    f"{checked.projection} v{checked.version} differs from a rebuild of the events it "
                    f"applied: {tables}"
                ),
                fix=(
                    f"`memsaga project rebuild {checked.projection}`, and report it: handlers must "
                    "tolerate duplicates and disorder"
                ),
            )
        )
    if checked.unapplied:
        found.append(
            Violation(
                check="read_models",
                kind="unapplied",
                subject=checked.projection,
                message=(
                    f"{checked.unapplied} events {checked.projection} handles, at or below its checkpoint "
                    f"{checked.position}, were neither applied nor parked"
                ),
                fix=f"`memsaga project rebuild {checked.projection}`",
            )
        )
    return found


def positions_violations(checked: PositionsCheck, limits: Limits) -> list[Violation]:
    """A relay or projection behind by more than ``limits.max_lag`` seconds; parked events."""
    found = []
    if checked.relay.lag_seconds > limits.max_lag:
        found.append(
            Violation(
                check="positions",
                kind="relay_lag",
                subject=checked.relay.name,
                message=(
                    f"the relay is {checked.relay.lag_events} events behind the store's head {checked.head}; "
                    f"the oldest waits for {checked.relay.lag_seconds:.0f}s"
                ),
                fix="check that `memsaga relay` runs (`memsaga stats`)",
            )
        )
    for p in checked.projections:
        if p.lag_seconds > limits.max_lag:
            found.append(
                Violation(
                    check="positions",
                    kind="projection_lag",
                    subject=p.name,
                    message=(
                        f"{p.name} is {p.lag_events} events behind; the oldest waits for {p.lag_seconds:.0f}s"
                    ),
                    fix=f"check that `memsaga project {p.name}` runs (`memsaga projections`)",
                )
            )
        if p.parked:
            found.append(
                Violation(
                    check="positions",
                    kind="parked",
                    subject=p.name,
                    message=f"{p.parked} events of {p.name} are parked",
                    fix="`memsaga dlq list`, then `memsaga dlq retry` or `memsaga dlq drop`",
                )
            )
    return found


def saga_violations(checked: SagasCheck) -> list[Violation]:
    """Each saga not terminal for longer than the threshold."""
    return [
        Violation(
            check="sagas",
            kind="stuck_saga",
            subject=s.correlation_id,
            message=(
                f"saga {s.correlation_id} is {s.status} since {s.since} "
                f"(over {checked.stuck_after_seconds:.0f}s; seen in the {s.source.replace('_', ' ')})"
            ),
            fix=f"`memsaga status {s.correlation_id}`; is a worker running?",
        )
        for s in checked.stuck
    ]
