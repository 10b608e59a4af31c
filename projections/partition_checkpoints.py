"""Owner of ``memsaga.projection_partitions``: the checkpoint of each partition of a version.

The runner holding a partition's lease advances its row in each batch's transaction; runners
of different partitions never write the same row, so their commits do not queue on one another.
A version's build (:mod:`projections.rebuild`) advances the version's own checkpoint
(:mod:`projections.versions`), which counts for every partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventstore.postgres import Connection
from projections.base import Executor


async def advance_partition(
    conn: Connection, name: str, version: int, partition: int, position: int, applied: int
) -> None:
    """Record a batch of ``partition``: the highest position it saw and the events it applied."""
    await conn.execute(
        """INSERT INTO memsaga.projection_partitions AS p (name, version, partition, position, applied)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name, version, partition) DO UPDATE
           SET position = greatest(p.position, EXCLUDED.position), applied = p.applied + EXCLUDED.applied,
               updated_at = now()""",
        name,
        version,
        partition,
        position,
        applied,
    )


@dataclass(frozen=True, slots=True)
class PartitionCheckpoint:
    """One partition's own progress (without the build's, which its version holds)."""

    partition: int
    position: int
    applied: int


async def partition_checkpoints(db: Executor, name: str, version: int) -> list[PartitionCheckpoint]:
    """The partitions of ``version`` that have committed a batch, by partition."""
    rows = await db.fetch(
        """SELECT partition, position, applied FROM memsaga.projection_partitions
           WHERE name = $1 AND version = $2 ORDER BY partition""",
        name,
        version,
    )
    return [PartitionCheckpoint(r["partition"], int(r["position"]), int(r["applied"])) for r in rows]


async def partition_totals(db: Executor, name: str, version: int) -> tuple[int, int]:
    """The highest position any partition of ``version`` reached and the events they applied."""
    row = await db.fetchrow(
        """SELECT coalesce(max(position), 0), coalesce(sum(applied), 0) FROM memsaga.projection_partitions
           WHERE name = $1 AND version = $2""",
        name,
        version,
    )
    assert row is not None
    return int(row[0]), int(row[1])
