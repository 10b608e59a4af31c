"""What ``memsaga stats`` and ``memsaga projections`` show: stream size, relay and projection lag.

Lag is measured against the event store, the source of truth: the number of events after
a checkpoint (for a projection: of the types it handles) and the age of the oldest of them.
A partitioned projection's lag counts from its slowest partition's checkpoint (an upper bound:
the other partitions may have applied some of those events; an idle partition's checkpoint
follows the relay's, :meth:`~projections.runner.ProjectionRunner.consume`); ``partition_detail`` has each
partition's checkpoint, the runner holding its lease and its consumer's backlog.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict

from eventstore import EventStore
from projections.base import Projection
from projections.parked import count_parked
from projections.partition_checkpoints import partition_checkpoints
from projections.partition_leases import lease_holders
from projections.relay import read_checkpoint
from projections.stream import stream_limits
from projections.versions import (
    BuildingVersion,
    VersionState,
    active_checkpoint,
    active_partition_positions,
    building_version,
    current_versions,
)


class Lag(BaseModel):
    """Events after a checkpoint, and how long the oldest of them has waited (0 when none)."""

    model_config = ConfigDict(frozen=True)

    events: int
    seconds: float


async def lag_after(store: EventStore, position: int, event_types: list[str] | None = None) -> Lag:
    """The lag of a reader at ``position`` (only ``event_types`` when given)."""
    backlog = await store.backlog(after_position=position, event_types=event_types)
    return Lag(events=backlog.events, seconds=round(backlog.seconds, 3))


class StreamStatus(BaseModel):
    """The JetStream events stream."""

    model_config = ConfigDict(frozen=True)

    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int
    limits: list[str]


async def stream_status(js: JetStreamContext, stream: str) -> StreamStatus | None:
    """Size and limits of the stream, or None when it does not exist."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return None
    return StreamStatus(
        name=stream,
        messages=info.state.messages,
        bytes=info.state.bytes,
        first_seq=info.state.first_seq,
        last_seq=info.state.last_seq,
        consumers=info.state.consumer_count,
        limits=stream_limits(info.config),
    )


class RelayStatus(BaseModel):
    """The relay's checkpoint against the store's head."""

    model_config = ConfigDict(frozen=True)

    stream: str
    position: int
    head: int
    lag: Lag
    published: int
    updated_at: datetime | None


async def relay_status(pool: asyncpg.Pool, store: EventStore, stream: str) -> RelayStatus:
    """Where the relay of ``stream`` stands (position 0 when it never ran)."""
    checkpoint = await read_checkpoint(pool, stream)
    return RelayStatus(
        stream=stream,
        position=checkpoint.position,
        head=await store.head_position(),
        lag=await lag_after(store, checkpoint.position),
        published=checkpoint.published,
        updated_at=checkpoint.updated_at,
    )


class ConsumerStatus(BaseModel):
    """The projection's durable consumer as JetStream sees it."""

    model_config = ConfigDict(frozen=True)

    pending: int
    ack_pending: int
    redelivered: int


async def consumer_status(
    js: JetStreamContext,
    stream: str,
    projection: Projection,
    partitions: int = 1,
    partition: int | None = None,
) -> ConsumerStatus | None:
    """The backlog of the consumer of ``partition`` (of every partition's, added up, when None),
    or None when none exists (or NATS does not answer)."""
    chosen = range(partitions) if partition is None else [partition]
    found: list[ConsumerStatus] = []
    for p in chosen:
        try:
            info = await js.consumer_info(stream, projection.partition_durable(p, partitions))
        except (nats.errors.Error, TimeoutError):
            continue
        pending, ack_pending = info.num_pending or 0, info.num_ack_pending or 0
        found.append(
            ConsumerStatus(pending=pending, ack_pending=ack_pending, redelivered=info.num_redelivered or 0)
        )
    if not found:
        return None
    return ConsumerStatus(
        pending=sum(c.pending for c in found),
        ack_pending=sum(c.ack_pending for c in found),
        redelivered=sum(c.redelivered for c in found),
    )


class PartitionStatus(BaseModel):
    """One partition of the active version: its checkpoint and the runner applying it."""

    model_config = ConfigDict(frozen=True)

    partition: int
    position: int  # the greater of the partition's checkpoint and its version's build
    applied: int  # by runners, since the build
    runner_id: str | None  # the lease's holder; None while no live runner holds it
    host: str | None
    pid: int | None
    lease_seconds_left: float | None
    consumer: ConsumerStatus | None = None


class RebuildStatus(BaseModel):
    """A build in progress."""

    model_config = ConfigDict(frozen=True)

    version: int
    position: int
    head: int

    @property
    def fraction(self) -> float:
        """Share of the store processed, 0..1."""
        return 1.0 if self.head <= 0 else min(self.position / self.head, 1.0)


def _rebuild_status(building: BuildingVersion) -> RebuildStatus:
    return RebuildStatus(version=building.version, position=building.position, head=building.head)


class VersionStatus(BaseModel):
    """A read-model version that is active or being built, side by side while a build runs."""

    model_config = ConfigDict(frozen=True)

    version: int
    code_version: int
    state: str  # 'active' or 'building'
    position: int
    applied: int
    head: int | None  # building only: the store's head at the build's last report
    progress: float | None  # building only: share of the store processed, 0..1
    partitions: int = 1


def _version_status(v: VersionState) -> VersionStatus:
    progress = None
    if v.state == "building" and v.head is None:
        progress = 0.0  # registered, not measured against the store yet
    elif v.state == "building" and v.head is not None:
        progress = 1.0 if v.head <= 0 else round(min(v.position / v.head, 1.0), 4)
    return VersionStatus(
        version=v.version,
        code_version=v.code_version,
        state=v.state,
        position=v.position,
        applied=v.applied,
        head=v.head,
        progress=progress,
        partitions=v.partitions,
    )


class ProjectionStatus(BaseModel):
    """A projection: its active read model, checkpoint, lag, parked events and any build."""

    model_config = ConfigDict(frozen=True)

    name: str
    code_version: int
    active_version: int | None
    active_code_version: int | None
    position: int
    applied: int
    lag: Lag
    parked: int
    rebuild: RebuildStatus | None
    versions: list[VersionStatus] = []
    consumer: ConsumerStatus | None = None
    partitions: int = 1  # of the active version
    partition_detail: list[PartitionStatus] = []  # partitioned versions only

    @property
    def needs_rebuild(self) -> bool:
        """Whether the active read model was built by other code than this process has."""
        return self.active_code_version is not None and self.active_code_version != self.code_version


async def projection_status(
    pool: asyncpg.Pool, store: EventStore, projection: Projection
) -> ProjectionStatus:
    """Status of one projection from PostgreSQL (consumer details are added by the caller)."""
    name = projection.name
    active = await active_checkpoint(pool, name)
    building = await building_version(pool, name)
    parked = await count_parked(pool, name)
    position = 0 if active is None else active.position
    detail = await _partition_detail(pool, name)
    slowest = min((p.position for p in detail), default=position)
    return ProjectionStatus(
        name=name,
        code_version=projection.version,
        active_version=None if active is None else active.version,
        active_code_version=None if active is None else active.code_version,
        position=position,
        applied=0 if active is None else active.applied,
        lag=await lag_after(store, slowest, list(projection.event_types)),
        parked=parked,
        rebuild=None if building is None else _rebuild_status(building),
        versions=[_version_status(v) for v in await current_versions(pool, name)],
        partitions=max(len(detail), 1),
        partition_detail=detail,
    )


async def _partition_detail(pool: asyncpg.Pool, name: str) -> list[PartitionStatus]:
    state = await active_partition_positions(pool, name)
    if state is None or state.partitions == 1:
        return []
    applied = {cp.partition: cp.applied for cp in await partition_checkpoints(pool, name, state.version)}
    holders = await lease_holders(pool, name, state.partitions)
    detail = []
    for partition, position in enumerate(state.positions):
        holder = holders.get(partition)
        detail.append(
            PartitionStatus(
                partition=partition,
                position=position,
                applied=applied.get(partition, 0),
                runner_id=None if holder is None else str(holder.runner_id),
                host=None if holder is None else holder.host,
                pid=None if holder is None else holder.pid,
                lease_seconds_left=None if holder is None else holder.seconds_left,
            )
        )
    return detail


async def with_consumers(
    js: JetStreamContext, stream: str, projection: Projection, status: ProjectionStatus
) -> ProjectionStatus:
    """``status`` with its consumers' backlog from JetStream (every partition's, and each one's)."""
    detail = [
        p.model_copy(
            update={"consumer": await consumer_status(js, stream, projection, status.partitions, p.partition)}
        )
        for p in status.partition_detail
    ]
    consumer = await consumer_status(js, stream, projection, status.partitions)
    return status.model_copy(update={"consumer": consumer, "partition_detail": detail})
