"""Where the relay and each projection stand against the store's head, and what is parked."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from eventstore import PostgresEventStore
from memsaga.verify.report import LagReport, PositionsCheck
from projections.base import Projection
from projections.status import projection_status, relay_status


async def check_positions(
    pool: asyncpg.Pool, store: PostgresEventStore, stream: str, projections: Iterable[Projection]
) -> PositionsCheck:
    """The relay's checkpoint and each projection's, with lag (events and age) and parked events."""
    relay = await relay_status(pool, store, stream)
    reports = []
    for projection in projections:
        status = await projection_status(pool, store, projection)
        reports.append(
            LagReport(
                name=projection.name,
                position=status.position,
                lag_events=status.lag.events,
                lag_seconds=status.lag.seconds,
                parked=status.parked,
            )
        )
    return PositionsCheck(
        head=relay.head,
        relay=LagReport(
            name=stream, position=relay.position, lag_events=relay.lag.events, lag_seconds=relay.lag.seconds
        ),
        projections=reports,
    )
