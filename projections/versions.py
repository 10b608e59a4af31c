"""Owner of ``memsaga.projections`` and ``memsaga.projection_versions``: every statement on them.

* ``memsaga.projections``: one row per projection with a read model, naming its active
  version (and the one being built).
* ``memsaga.projection_versions``: every version of every read model, its state
  (building, active, retired), its partition count and its checkpoint (highest position,
  events applied). A partitioned version's runners advance their partitions' checkpoints
  instead (:mod:`projections.partition_checkpoints`); what this module reports adds them up.
* The handover lock: appliers of the live version hold it shared for their transaction; the
  rebuild holds it exclusively while it catches up and switches the active version. So no
  live transaction straddles a switch, and every one after it writes to the new version.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from eventstore.postgres import Connection
from projections.base import Executor, Projection
from projections.errors import ProjectionCodeMismatch
from projections.partition_checkpoints import partition_checkpoints, partition_totals
from projections.row_security import expose_views, protect_tables

_LOCK = "SELECT {fn}(hashtextextended('memsaga.projection:' || $1::text, 0))"


async def lock_shared(conn: Connection, name: str) -> None:
    """Hold the projection's handover lock shared until the transaction ends (live appliers)."""
    await conn.execute(_LOCK.format(fn="pg_advisory_xact_lock_shared"), name)


async def lock_exclusive(conn: Connection, name: str) -> None:
    """Hold the projection's handover lock exclusively until the transaction ends (the switch)."""
    await conn.execute(_LOCK.format(fn="pg_advisory_xact_lock"), name)


# --- The active version ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    """The read-model version readers and the live runner use."""

    version: int
    code_version: int
    partitions: int = 1


async def active_version(conn: Connection, name: str) -> ActiveVersion | None:
    """The active version of a projection, or None before its first build."""
    row = await conn.fetchrow(
        """SELECT p.active_version, v.code_version, v.partitions FROM memsaga.projections p
           JOIN memsaga.projection_versions v ON v.name = p.name AND v.version = p.active_version
           WHERE p.name = $1""",
        name,
    )
    return None if row is None else ActiveVersion(row[0], row[1], row[2])


def require_code_version(projection: Projection, active: ActiveVersion) -> None:
    """:raises ProjectionCodeMismatch: the active version was built by other handler code
    (its ``downgrade`` says whether that code is newer than ``projection``'s)."""
    if active.code_version != projection.version:
        raise ProjectionCodeMismatch(projection.name, active.code_version, projection.version)


@dataclass(frozen=True, slots=True)
class ActiveCheckpoint:
    """The active version with its checkpoint (for status reports)."""

    version: int
    code_version: int
    position: int
    applied: int


async def active_checkpoint(db: Executor, name: str) -> ActiveCheckpoint | None:
    """The active version and its checkpoint, or None before the first build. Of a partitioned
    version: the highest position any partition reached, and what the build and they applied."""
    row = await db.fetchrow(
        """SELECT v.version, v.code_version, v.position, v.applied, v.partitions FROM memsaga.projections p
           JOIN memsaga.projection_versions v ON v.name = p.name AND v.version = p.active_version
           WHERE p.name = $1""",
        name,
    )
    if row is None:
        return None
    position, applied = await _with_partitions(db, name, row["version"], row["partitions"], row)
    return ActiveCheckpoint(row["version"], row["code_version"], position, applied)


async def _with_partitions(
    db: Executor, name: str, version: int, partitions: int, row: asyncpg.Record
) -> tuple[int, int]:
    position, applied = int(row["position"]), int(row["applied"])
    if partitions == 1:
        return position, applied
    reached, more = await partition_totals(db, name, version)
    return max(position, reached), applied + more


# --- Building and switching -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildingVersion:
    """A version being built: its code version, checkpoint and the store's head at its last report."""

    version: int
    code_version: int
    position: int
    head: int
    partitions: int = 1


async def building_version(db: Executor, name: str) -> BuildingVersion | None:
    """The newest version in state *building*, or None."""
    row = await db.fetchrow(
        """SELECT version, code_version, position, coalesce(build_head, 0) AS head, partitions
           FROM memsaga.projection_versions
           WHERE name = $1 AND state = 'building' ORDER BY version DESC LIMIT 1""",
        name,
    )
    if row is None:
        return None
    return BuildingVersion(
        row["version"], row["code_version"], int(row["position"]), int(row["head"]), row["partitions"]
    )


@dataclass(frozen=True, slots=True)
class VersionState:
    """One read-model version that is active or being built, with its checkpoint."""

    version: int
    code_version: int
    state: str  # 'active' or 'building'
    position: int
    applied: int
    head: int | None  # the store's head at the build's last report (None for the active version)
    partitions: int = 1


async def current_versions(db: Executor, name: str) -> list[VersionState]:
    """The active version and any being built, oldest first (for status reports)."""
    rows = await db.fetch(
        """SELECT version, code_version, state, position, applied, build_head, partitions
           FROM memsaga.projection_versions
           WHERE name = $1 AND state IN ('active', 'building') ORDER BY version""",
        name,
    )
    states = []
    for r in rows:
        position, applied = await _with_partitions(db, name, r["version"], r["partitions"], r)
        head = None if r["state"] == "active" or r["build_head"] is None else int(r["build_head"])
        version, code, state = r["version"], r["code_version"], r["state"]
        states.append(VersionState(version, code, state, position, applied, head, r["partitions"]))
    return states


async def latest_version(conn: Connection, name: str) -> int:
    """The highest version number registered for ``name`` (0 when none)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM memsaga.projection_versions WHERE name = $1", name
        )
    )


async def retire_version(conn: Connection, name: str, version: int) -> None:
    """Mark ``version`` retired (an abandoned build: kept for inspection, never dropped)."""
    await conn.execute(
        """UPDATE memsaga.projection_versions SET state = 'retired', retired_at = now()
           WHERE name = $1 AND version = $2""",
        name,
        version,
    )


async def create_version(conn: Connection, projection: Projection, version: int, partitions: int = 1) -> None:
    """Register ``version`` as building, with ``partitions`` partitions, and create its tables,
    protected by row-level security (:mod:`projections.row_security`), in one transaction (the caller's)."""
    await conn.execute(
        """INSERT INTO memsaga.projection_versions (name, version, code_version, state, partitions)
           VALUES ($1, $2, $3, 'building', $4)""",
        projection.name,
        version,
        projection.version,
        partitions,
    )
    await conn.execute(projection.ddl_at(version))
    await protect_tables(conn, projection.tables_at(version).values())
    await conn.execute(
        "UPDATE memsaga.projections SET building_version = $2, updated_at = now() WHERE name = $1",
        projection.name,
        version,
    )


async def record_build_head(db: Executor, name: str, version: int, head: int) -> None:
    """Remember the store's head a build last measured itself against (for progress reports)."""
    await db.execute(
        "UPDATE memsaga.projection_versions SET build_head = $3 WHERE name = $1 AND version = $2",
        name,
        version,
        head,
    )


async def activate(conn: Connection, projection: Projection, version: int) -> None:
    """Make ``version`` the active one: registry row, version states and reader views, atomically."""
    await conn.execute(
        """UPDATE memsaga.projection_versions SET state = 'retired', retired_at = now(), updated_at = now()
           WHERE name = $1 AND state = 'active' AND version <> $2""",
        projection.name,
        version,
    )
    await conn.execute(
        """UPDATE memsaga.projection_versions SET state = 'active', activated_at = now(), updated_at = now()
           WHERE name = $1 AND version = $2""",
        projection.name,
        version,
    )
    await conn.execute(
        """INSERT INTO memsaga.projections (name, active_version) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET active_version = EXCLUDED.active_version,
               building_version = NULL, updated_at = now()""",
        projection.name,
        version,
    )
    physical = projection.tables_at(version)
    for logical, view in projection.views().items():
        # DROP + CREATE rather than CREATE OR REPLACE: a new code version may change columns.
        await conn.execute(f"DROP VIEW IF EXISTS {view}")
        await conn.execute(
            f"CREATE VIEW {view} WITH (security_invoker = true) AS SELECT * FROM {physical[logical]}"
        )
    await expose_views(conn, projection.views().values())


# --- Checkpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a version got: the highest position it has seen and how many events it applied."""

    position: int
    applied: int


async def checkpoint(db: Executor, name: str, version: int) -> Checkpoint:
    """The checkpoint of ``version`` (which must exist); of a partitioned version, the highest
    position any partition reached and what the build and they applied."""
    row = await db.fetchrow(
        """SELECT position, applied, partitions FROM memsaga.projection_versions
           WHERE name = $1 AND version = $2""",
        name,
        version,
    )
    assert row is not None, f"{name} v{version} is not registered"
    return Checkpoint(*await _with_partitions(db, name, version, row["partitions"], row))


async def version_position(db: Executor, name: str, version: int) -> int:
    """The version's own checkpoint position: what its build applied (every partition has that)."""
    value = await db.fetchval(
        "SELECT position FROM memsaga.projection_versions WHERE name = $1 AND version = $2", name, version
    )
    return int(value or 0)


async def lock_checkpoint(conn: Connection, name: str, version: int) -> None:
    """Lock the version's checkpoint row until the transaction ends.

    Appliers of one version take it first, so their transactions run one after another:
    they cannot deadlock on read-model rows, and the checkpoint only moves forward.
    """
    await conn.execute(
        "SELECT 1 FROM memsaga.projection_versions WHERE name = $1 AND version = $2 FOR UPDATE", name, version
    )


async def advance_checkpoint(conn: Connection, name: str, version: int, position: int, applied: int) -> None:
    """Record progress of ``version``: highest position seen and events newly applied."""
    await conn.execute(
        """UPDATE memsaga.projection_versions
           SET position = greatest(position, $3), applied = applied + $4, updated_at = now()
           WHERE name = $1 AND version = $2""",
        name,
        version,
        position,
        applied,
    )


@dataclass(frozen=True, slots=True)
class PartitionPositions:
    """Where each partition of the active version stands: the greater of the version's own
    position (its build's) and the partition's checkpoint."""

    version: int
    partitions: int
    positions: tuple[int, ...]  # by partition


async def active_partition_positions(db: Executor, name: str) -> PartitionPositions | None:
    """The active version's position per partition (one entry when unpartitioned), or None
    before the first build."""
    row = await db.fetchrow(
        """SELECT v.version, v.partitions, v.position FROM memsaga.projections p
           JOIN memsaga.projection_versions v ON v.name = p.name AND v.version = p.active_version
           WHERE p.name = $1""",
        name,
    )
    if row is None:
        return None
    version, partitions, own = row["version"], row["partitions"], int(row["position"])
    positions = [own] * partitions
    if partitions > 1:
        for cp in await partition_checkpoints(db, name, version):
            positions[cp.partition] = max(own, cp.position)
    return PartitionPositions(version, partitions, tuple(positions))
