"""Read-your-writes: whether a projection's active read model has applied a given position.

A projection consumes only its own event types, so its checkpoint (the highest position it
applied) can stay below a position that only other types reach. It has applied ``position``
when its checkpoint is there, or when no event of its types lies between its checkpoint and
``position``. One runner applies in position order, so that is exact; runners that share a
consumer can commit batches out of order, and a handler failing transiently leaves its event
for redelivery after later ones: then the checkpoint can pass an event not yet applied, for
as long as the redelivery takes.
"""

from __future__ import annotations

import asyncpg

from eventstore import PostgresEventStore
from projections.base import Projection
from projections.versions import active_checkpoint


async def applied_position(pool: asyncpg.Pool, projection: Projection) -> int | None:
    """The active version's checkpoint, or None before the first build."""
    active = await active_checkpoint(pool, projection.name)
    return None if active is None else active.position


async def has_applied(
    pool: asyncpg.Pool, store: PostgresEventStore, projection: Projection, position: int
) -> bool:
    """Whether ``projection``'s active read model reflects every event up to ``position``."""
    reached = await applied_position(pool, projection)
    if reached is None:
        return False
    if reached >= position:
        return True
    pending = await store.backlog(
        after_position=reached, until_position=position, event_types=projection.event_types
    )
    return pending.events == 0
