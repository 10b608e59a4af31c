"""Owner of ``memsaga.projection_runners`` and ``memsaga.projection_leases``: who applies which
partition of a partitioned projection.

Each runner registers itself with an expiry and renews it, with its partitions' leases, every
few seconds (:meth:`PartitionLeases.renew`, by :mod:`projections.partition_runs`); leases last
``ttl`` seconds. At each tick
a runner counts the live runners and moves towards its fair share
(:func:`projections.partitioning.rebalance`): it takes free or expired partitions, gives up
what it holds beyond its share. A runner that dies (even by SIGKILL) stops renewing: its
leases expire after ``ttl`` and the others take its partitions at their next tick, so within
``ttl`` plus one interval. Times are PostgreSQL's (``clock_timestamp()``), one clock for all.

The fence: a batch's transaction calls :func:`fence`, which share-locks the partition's lease
row and checks that this runner holds it; a claim by another runner waits for that commit,
and a runner whose lease was taken cannot commit any more.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from eventstore.postgres import Connection
from projections.base import Executor
from projections.errors import LeaseLost
from projections.partitioning import Rebalance, rebalance
from projections.versions import ActiveVersion

DEFAULT_TTL = 6.0
DEFAULT_INTERVAL = 2.0

_EXPIRES = "clock_timestamp() + make_interval(secs => $4)"


@dataclass(frozen=True, slots=True)
class Lease:
    """A partition and its holder (a live lease)."""

    partition: int
    owner: uuid.UUID


class PartitionLeases:
    """One runner's registration and leases for projection ``name`` with ``partitions`` partitions."""

    def __init__(
        self,
        db: Executor,
        name: str,
        partitions: int,
        *,
        runner_id: uuid.UUID | None = None,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        self.db = db
        self.name = name
        self.partitions = partitions
        self.runner_id = runner_id or uuid.uuid4()
        self.ttl = ttl

    async def renew(self) -> set[int]:
        """Renew the registration and every lease still held; the partitions held."""
        await self.db.execute(
            f"""INSERT INTO memsaga.projection_runners (name, partitions, runner_id, host, pid, expires_at)
                VALUES ($1, $2, $3, $5, $6, {_EXPIRES})
                ON CONFLICT (name, partitions, runner_id) DO UPDATE SET expires_at = EXCLUDED.expires_at""",
            self.name,
            self.partitions,
            self.runner_id,
            self.ttl,
            socket.gethostname(),
            os.getpid(),
        )
        rows = await self.db.fetch(
            f"""UPDATE memsaga.projection_leases SET expires_at = {_EXPIRES}
                WHERE name = $1 AND partitions = $2 AND owner = $3 AND expires_at > clock_timestamp()
                RETURNING partition""",
            self.name,
            self.partitions,
            self.runner_id,
            self.ttl,
        )
        return {r[0] for r in rows}

    async def plan(self) -> Rebalance:
        """This runner's next move, from the live leases and runners."""
        leases = await live_leases(self.db, self.name, self.partitions)
        runners = await self.db.fetch(
            """SELECT runner_id FROM memsaga.projection_runners
               WHERE name = $1 AND partitions = $2 AND expires_at > clock_timestamp()""",
            self.name,
            self.partitions,
        )
        live = {str(r[0]) for r in runners}
        holders = {lease.partition: str(lease.owner) for lease in leases}
        return rebalance(str(self.runner_id), self.partitions, holders, live)

    async def claim(self, partitions: tuple[int, ...]) -> set[int]:
        """Take ``partitions`` where they are free or expired; those taken."""
        rows = await self.db.fetch(
            f"""INSERT INTO memsaga.projection_leases AS l (name, partitions, partition, owner, expires_at)
                SELECT $1, $2, p, $3, {_EXPIRES} FROM unnest($5::integer[]) AS p
                ON CONFLICT (name, partitions, partition) DO UPDATE
                SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at, acquired_at = clock_timestamp()
                WHERE l.expires_at <= clock_timestamp() OR l.owner = EXCLUDED.owner
                RETURNING partition""",
            self.name,
            self.partitions,
            self.runner_id,
            self.ttl,
            list(partitions),
        )
        return {r[0] for r in rows}

    async def release(self, partitions: set[int] | None = None) -> None:
        """Give up ``partitions`` (all this runner holds when None): another runner may take them."""
        await self.db.execute(
            """DELETE FROM memsaga.projection_leases
               WHERE name = $1 AND partitions = $2 AND owner = $3
                 AND ($4::integer[] IS NULL OR partition = ANY($4))""",
            self.name,
            self.partitions,
            self.runner_id,
            None if partitions is None else sorted(partitions),
        )

    async def leave(self) -> None:
        """Give up every lease and the registration (a clean stop: the others take over at once)."""
        await self.release()
        await self.db.execute(
            "DELETE FROM memsaga.projection_runners WHERE name = $1 AND partitions = $2 AND runner_id = $3",
            self.name,
            self.partitions,
            self.runner_id,
        )


async def live_leases(db: Executor, name: str, partitions: int) -> list[Lease]:
    """The leases not expired of a projection with ``partitions`` partitions, by partition."""
    rows = await db.fetch(
        """SELECT partition, owner FROM memsaga.projection_leases
           WHERE name = $1 AND partitions = $2 AND expires_at > clock_timestamp() ORDER BY partition""",
        name,
        partitions,
    )
    return [Lease(r["partition"], r["owner"]) for r in rows]


async def live_runners(db: Executor, name: str, partitions: int) -> int:
    """How many runners of the projection are registered and alive."""
    value = await db.fetchval(
        """SELECT count(*) FROM memsaga.projection_runners
           WHERE name = $1 AND partitions = $2 AND expires_at > clock_timestamp()""",
        name,
        partitions,
    )
    return int(value)


async def fence(conn: Connection, name: str, partitions: int, partition: int, owner: uuid.UUID) -> None:
    """In a batch's transaction: share-lock the partition's lease until it ends, and check that
    ``owner`` holds it.

    :raises LeaseLost: another runner holds it, or it expired; the transaction must roll back.
    """
    holds = await conn.fetchval(
        """SELECT owner = $4 AND expires_at > clock_timestamp() FROM memsaga.projection_leases
           WHERE name = $1 AND partitions = $2 AND partition = $3 FOR SHARE""",
        name,
        partitions,
        partition,
        owner,
    )
    if not holds:
        raise LeaseLost(name, partition, partitions)


_ACTIVE_FENCED = """SELECT p.active_version, v.code_version, v.partitions,
        (SELECT l.owner = $3 AND l.expires_at > clock_timestamp() FROM memsaga.projection_leases l
         WHERE l.name = p.name AND l.partitions = v.partitions AND l.partition = $2 FOR SHARE) AS holds
    FROM memsaga.projections p
    JOIN memsaga.projection_versions v ON v.name = p.name AND v.version = p.active_version
    WHERE p.name = $1"""


async def active_fenced(
    conn: Connection, name: str, partition: int, owner: uuid.UUID
) -> tuple[ActiveVersion | None, bool]:
    """In a batch's transaction, after the handover lock: the active version and, in the same
    round trip, :func:`fence` on its lease of ``partition`` (whether ``owner`` holds it; the row
    stays share-locked until the transaction ends). (None, False) before the first build."""
    row = await conn.fetchrow(_ACTIVE_FENCED, name, partition, owner)
    if row is None:
        return None, False
    return ActiveVersion(row[0], row[1], row[2]), bool(row[3])


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a partition's lease, and for how much longer unless renewed."""

    runner_id: uuid.UUID
    host: str | None
    pid: int | None
    seconds_left: float


async def lease_holders(db: Executor, name: str, partitions: int) -> dict[int, Holder]:
    """The live leases of a projection with ``partitions`` partitions and their runners, by partition."""
    rows = await db.fetch(
        """SELECT l.partition, l.owner, r.host, r.pid,
                  extract(epoch FROM l.expires_at - clock_timestamp())::float8 AS left
           FROM memsaga.projection_leases l
           LEFT JOIN memsaga.projection_runners r
             ON r.name = l.name AND r.partitions = l.partitions AND r.runner_id = l.owner
           WHERE l.name = $1 AND l.partitions = $2 AND l.expires_at > clock_timestamp()""",
        name,
        partitions,
    )
    return {r["partition"]: Holder(r["owner"], r["host"], r["pid"], round(r["left"], 1)) for r in rows}
