"""Read-your-writes: whether a projection's active read model has applied a given position.

A projection consumes only its own event types, so its checkpoint (the highest position it
applied) can stay below a position that only other types reach. It has applied ``position``
when its checkpoint is there, or when no event of its types lies between its checkpoint and
``position``. A partitioned version has a checkpoint per partition: it has applied
``position`` when each partition has reached it or has no event of its types (and its users)
in between; asked about one user, only that user's partition and events count.

One runner applies a partition in position order, so that is exact; runners that share an
unpartitioned consumer can commit batches out of order, and a handler failing transiently
leaves its event for redelivery after later ones: then the checkpoint can pass an event not
yet applied, for as long as the redelivery takes.
"""

from __future__ import annotations

import asyncpg

from eventstore import PostgresEventStore
from projections.base import Projection
from projections.partitioning import partition_of
from projections.versions import active_partition_positions

_PAGE = 500


async def applied_position(pool: asyncpg.Pool, projection: Projection) -> int | None:
    """The position every partition of the active version has reached (its checkpoint when
    unpartitioned), or None before the first build."""
    state = await active_partition_positions(pool, projection.name)
    return None if state is None else min(state.positions)


async def has_applied(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    projection: Projection,
    position: int,
    *,
    user_id: str | None = None,
) -> bool:
    """Whether ``projection``'s active read model reflects every event up to ``position``
    (every event of ``user_id``, when given)."""
    state = await active_partition_positions(pool, projection.name)
    if state is None:
        return False
    partitions, reached = state.partitions, state.positions
    mine = None if user_id is None else partition_of(user_id, partitions)
    floor = min(reached) if mine is None else reached[mine]
    if floor >= position:
        return True
    if partitions == 1 and user_id is None:
        pending = await store.backlog(
            after_position=floor, until_position=position, event_types=projection.event_types
        )
        return pending.events == 0
    types = set(projection.event_types)
    async for batch in store.read_all(after_position=floor, batch_size=_PAGE):
        for event in batch:
            if event.position > position:
                return True
            if event.event_type not in types or (user_id is not None and event.user_id != user_id):
                continue
            if event.position > reached[partition_of(event.user_id, partitions)]:
                return False
    return True
