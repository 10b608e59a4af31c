"""The projection runner: a durable JetStream pull consumer per projection, feeding PostgreSQL.

For each fetched batch, in one transaction: take the handover lock shared, find the active
read-model version, apply the events in one savepoint (skipping events that version has
applied already, by event id; a failing handler makes it one savepoint per event), park
events that failed too often, advance the checkpoint; commit; and only then ack. A crash
before the commit changes nothing and the messages come again; a crash after it makes them
come again as duplicates, which are skipped. Several runner processes of one projection bind
to the same durable consumer and share its messages. While a batch runs, in-progress acks
keep JetStream from redelivering it.

A partitioned version (P > 1 partitions by user, :mod:`projections.partitioning`) has a
durable consumer per partition, filtered on the partition's slots, and a checkpoint per
partition. Runners share the partitions through leases in PostgreSQL
(:mod:`projections.partition_runs`, :mod:`projections.partition_leases`): each partition is
applied by the one runner holding its lease, whose batches commit only while it holds it, and
runners of different partitions commit in parallel.

Before it binds, a runner makes sure the active version was built by its code (and with the
partition count it was told to use, if any): otherwise it builds its version beside the live
one first (:func:`~projections.rebuild.ensure_current`; runners with the old code keep the
live one current meanwhile). A runner whose code becomes older than the active version's
(another process switched) stops applying and says to upgrade; one that follows the active
partition count binds again to the new version's consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum

import asyncpg
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventstore import PostgresEventStore, RecordedEvent, SchemaRegistry, failpoints
from projections.base import Projection
from projections.errors import (
    ConsumerFiltersIgnored,
    LeaseLost,
    PartitionsChanged,
    ProjectionCodeMismatch,
    ProjectionNotInitialized,
)
from projections.metrics import ProjectionMetrics
from projections.parked import park
from projections.partition_checkpoints import advance_partition
from projections.partition_leases import DEFAULT_INTERVAL, DEFAULT_TTL, active_fenced
from projections.rebuild import ProgressCallback, ensure_current
from projections.relay import DATABASE_ERRORS, read_checkpoint
from projections.sealed import using_vault
from projections.stream import DEFAULT_STREAM, ensure_stream
from projections.subjects import DEFAULT_PREFIX, MSG_ID, decode_body, partition_filters, type_filters
from projections.tracing import batch_handling_span, carries_trace, handling_span
from projections.tracking import Around, BatchFailed, apply_batch, describe_error
from projections.versions import (
    ActiveVersion,
    active_version,
    advance_checkpoint,
    lock_checkpoint,
    lock_shared,
    require_code_version,
)
from projections.wakeup import Outage, sleep_or_stop

log = logging.getLogger(__name__)

# What an outage looks like while a runner binds: NATS or PostgreSQL away, retried.
_START_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, *DATABASE_ERRORS)

IDLE_ADVANCE_EVERY = 5.0
"""Seconds between two checks whether an idle partition's checkpoint can move up to the relay's."""
# Why such a check gives up (it is tried again later): NATS or PostgreSQL away.
_IDLE_ADVANCE_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    OSError,
    TimeoutError,
    *DATABASE_ERRORS,
)


@dataclass(frozen=True)
class RunnerConfig:
    """Tuning of a runner. ``max_deliver`` deliveries of a failing event park it."""

    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_PREFIX
    batch_size: int = 100
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    max_deliver: int = 5
    retry_delay: float = 1.0  # a failed event comes again after retry_delay × its delivery count
    max_ack_pending: int = 1000
    build_batch_size: int = 500  # events per transaction when it builds its version from the store
    partitions: int | None = None  # None: the active version's count (the projection's for a first build)
    lease_ttl: float = DEFAULT_TTL  # a partition's lease lasts this long unless renewed
    lease_interval: float = DEFAULT_INTERVAL  # how often a runner renews its leases and rebalances
    replicas: int | None = None  # copies of the events stream, should a runner create it (as the relay's)

    @property
    def heartbeat_interval(self) -> float:
        """How often a running batch tells JetStream it is still being worked on."""
        return self.ack_wait / 3


class Outcome(Enum):
    """What happens to a message after its batch committed."""

    ACK = "ack"  # applied, or a duplicate
    PARK = "park"  # failed for the last time: parked in PostgreSQL, terminated in JetStream
    RETRY = "retry"  # failed: redelivered later


@dataclass
class _Item:
    msg: Msg
    event: RecordedEvent | None
    error: str | None = None
    outcome: Outcome = Outcome.RETRY


@dataclass
class RunnerStats:
    """What a runner did so far."""

    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    failures: int = 0


class ProjectionRunner:
    """Runs one projection from its durable consumer; see the module docstring."""

    def __init__(
        self,
        projection: Projection,
        store: PostgresEventStore,
        js: JetStreamContext,
        config: RunnerConfig | None = None,
        *,
        registry: SchemaRegistry | None = None,
        database: str = "PostgreSQL",
        build_progress: ProgressCallback | None = None,
    ) -> None:
        self.projection = projection
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.js = js
        self.config = config or RunnerConfig()
        self.registry = registry if registry is not None else store.registry
        self.stats = RunnerStats()
        self.outage = Outage(f"projection {projection.name}", log)
        self._database = database  # how logs name the database (an address, without credentials)
        self.metrics = ProjectionMetrics(projection.name)
        self.build_progress = build_progress  # told how a build of its version goes
        self.partitions = 1  # of the version it applies (known once started)
        self.runner_id = uuid.uuid4()  # the owner of its partitions' leases
        self._idle_checked: dict[int, float] = {}  # partition -> when it was last found idle

    def consumer_config(self, partition: int = 0, partitions: int = 1) -> ConsumerConfig:
        """The durable consumer of one partition (the unpartitioned one by default): explicit
        acks, only this projection's event types (and, when partitioned, the partition's slots).

        The server's own ``max_deliver`` stays unlimited: the runner parks an event itself after
        ``config.max_deliver`` deliveries, so an event can never be skipped without a trace.
        """
        cfg, types = self.config, self.projection.event_types
        if partitions == 1:
            filters = [f for t in types for f in type_filters(t, cfg.subject_prefix)]
            about = ""
        else:
            filters = partition_filters(types, partition, partitions, cfg.subject_prefix)
            about = f", partition {partition} of {partitions}"
        return ConsumerConfig(
            durable_name=self.projection.partition_durable(partition, partitions),
            description=f"memsaga projection {self.projection.name}{about}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait,
            max_deliver=-1,
            max_ack_pending=cfg.max_ack_pending,
            filter_subjects=filters,
        )

    async def prepare(self) -> ActiveVersion:
        """Build the read model from the store if it never was, was built by older code or has
        another partition count than ``config.partitions``; make sure the stream exists.

        :raises ProjectionCodeMismatch: the active version was built by newer code (a downgrade).
        """
        cfg = self.config
        active = await ensure_current(
            self.pool,
            self.store,
            self.projection,
            batch_size=cfg.build_batch_size,
            progress=self.build_progress,
            partitions=cfg.partitions,
        )
        await ensure_stream(
            self.js, cfg.stream, subject_prefix=cfg.subject_prefix, accept_limits=True, replicas=cfg.replicas
        )
        self.partitions = active.partitions
        return active

    async def bind(self, partition: int = 0, partitions: int = 1) -> JetStreamContext.PullSubscription:
        """Create (or update) a partition's durable consumer and bind to it."""
        wanted = self.consumer_config(partition, partitions)
        info = await self.js.add_consumer(self.config.stream, wanted)
        _require_filters(self.js, wanted, info.config)
        assert wanted.durable_name is not None
        return await self.js.pull_subscribe_bind(durable=wanted.durable_name, stream=self.config.stream)

    async def start(self) -> JetStreamContext.PullSubscription:
        """:meth:`prepare`, then bind to the unpartitioned consumer (its first partition's when
        the active version is partitioned; :meth:`run` shares partitions by lease instead).

        :raises ProjectionCodeMismatch: the active version was built by newer code (a downgrade).
        """
        active = await self.prepare()
        return await self.bind(0, active.partitions)

    async def run(self, stop: asyncio.Event | None = None) -> RunnerStats:
        """Consume until ``stop`` is set, waiting out outages of NATS and PostgreSQL.

        A batch in flight when ``stop`` is set is finished (committed, then acked); one that
        fails is nak'ed and comes again. Each outage is logged once, when it begins, and once
        when it ends.

        :raises ProjectionCodeMismatch: at the start, see :meth:`start`; later, another process
            switched to a version built by newer code (logged; nothing is written to it).
        """
        stop = stop or asyncio.Event()
        try:
            return await self._run(stop)
        except ProjectionCodeMismatch as exc:
            log.error("%s: stopped applying: %s", self.projection.name, exc)
            raise

    async def _run(self, stop: asyncio.Event) -> RunnerStats:
        from projections.partition_runs import PartitionedRun  # it drives this runner's batches

        while not stop.is_set():
            active = await self._start_retried(stop)
            if active is None:
                break  # stopped before it could bind
            try:
                if active.partitions == 1:
                    sub = await self._bind_retried(stop, 0, 1)
                    if sub is not None:
                        await self.consume(sub, stop)
                else:
                    await PartitionedRun(self, active.partitions).run(stop)
                break
            except PartitionsChanged as exc:
                if self.config.partitions is not None:
                    log.error("%s: stopped applying: %s", self.projection.name, exc)
                    raise
                log.info(
                    "%s: the active version now has %d partition(s) (was %d): binding to its consumers",
                    self.projection.name,
                    exc.active,
                    exc.running,
                )
        return self.stats

    async def consume(
        self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event, partition: int | None = None
    ) -> None:
        """Fetch and apply batches of one consumer until ``stop`` is set, or this runner lost
        ``partition``'s lease (its batch rolled back and nak'ed).

        :raises ProjectionCodeMismatch: see :meth:`run`.
        :raises PartitionsChanged: the active version has another partition count now.
        """
        backoff = 0.2
        ahead: asyncio.Future[list[Msg]] | None = None  # the next batch's fetch, while one applies
        try:
            while not stop.is_set():
                fetching, ahead = ahead or asyncio.ensure_future(self._fetch(sub)), None
                try:
                    msgs = await fetching
                except (nats.errors.TimeoutError, TimeoutError):
                    if self._nats_connected():
                        self.outage.recovered()
                        self.metrics.caught_up()
                    await self._require_current()  # idle, but a switch elsewhere must stop it too
                    if partition is not None:
                        await self._advance_idle(sub, partition)
                    continue  # nothing to fetch within fetch_timeout: an idle stream, not a fault
                except (nats.errors.Error, OSError) as exc:
                    self.outage.failed(self._nats_address(), exc)
                    await sleep_or_stop(backoff, stop)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if len(msgs) >= self.config.batch_size:
                    # A full batch: a backlog. Fetch the next one while this one applies (they
                    # still apply one after the other, in order). A partial batch means the
                    # stream is drained: then one pull at a time, waiting for new messages.
                    ahead = asyncio.ensure_future(self._fetch(sub))
                try:
                    await self.run_batch(msgs, partition)
                    self.outage.recovered()
                    backoff = 0.2
                except LeaseLost as exc:
                    log.warning("%s", exc)
                    await self._settle_quietly([_Item(m, None) for m in msgs])
                    return
                except (ProjectionCodeMismatch, PartitionsChanged):
                    await self._settle_quietly([_Item(m, None) for m in msgs])
                    raise
                except DATABASE_ERRORS as exc:
                    self.outage.failed(self._database, exc)
                    await self._settle_quietly([_Item(m, None) for m in msgs])
                    await self._give_back(ahead)
                    ahead = None
                    await sleep_or_stop(backoff, stop)
                    backoff = min(backoff * 2, 10.0)
        finally:
            await self._give_back(ahead)
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                await sub.unsubscribe()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        return await sub.fetch(self.config.batch_size, timeout=self.config.fetch_timeout)

    async def _give_back(self, ahead: asyncio.Future[list[Msg]] | None) -> None:
        """Nak a batch fetched ahead and not applied (a lost lease, a stop, an outage), so that it
        comes again at once rather than after ``ack_wait``; it waits at most ``fetch_timeout``."""
        if ahead is None:
            return
        try:
            msgs = await ahead
        except (nats.errors.Error, OSError, TimeoutError):
            return  # nothing came, or NATS is away: whatever it held is redelivered after ack_wait
        await self._settle_quietly([_Item(m, None) for m in msgs])

    async def _advance_idle(self, sub: JetStreamContext.PullSubscription, partition: int) -> None:
        """Move an idle partition's checkpoint up to the relay's, at most every
        :data:`IDLE_ADVANCE_EVERY` seconds.

        The relay's checkpoint is read first: every event up to it is in the stream. When the
        partition's consumer then has nothing pending and nothing unacknowledged, every one of
        them that is this partition's was applied (a message is acked after its commit). Without
        this, a partition whose users are quiet would keep an old checkpoint while the others move
        on, and a lag counted from the slowest partition would grow without anything waiting.
        """
        now = asyncio.get_running_loop().time()
        if now < self._idle_checked.get(partition, 0.0) + IDLE_ADVANCE_EVERY:
            return
        self._idle_checked[partition] = now
        name = self.projection.name
        try:
            published = (await read_checkpoint(self.pool, self.config.stream)).position
            info = await sub.consumer_info()
            if info.num_pending or info.num_ack_pending:
                return
            async with self.pool.acquire() as conn, conn.transaction():
                await lock_shared(conn, name)
                active, holds = await active_fenced(conn, name, partition, self.runner_id)
                if active is not None and holds and active.partitions == self.partitions:
                    await advance_partition(conn, name, active.version, partition, published, 0)
        except _IDLE_ADVANCE_ERRORS:
            return  # away: the next batch or tick deals with it

    async def _require_current(self) -> None:
        """:raises ProjectionCodeMismatch: the active version is no longer this code's.
        :raises PartitionsChanged: it has another partition count."""
        try:
            async with self.pool.acquire() as conn:
                active = await active_version(conn, self.projection.name)
        except DATABASE_ERRORS:
            return  # the next batch reports the outage
        if active is not None:
            self._require_version(active)

    def _require_version(self, active: ActiveVersion) -> None:
        require_code_version(self.projection, active)
        if active.partitions != self.partitions:
            raise PartitionsChanged(self.projection.name, active.partitions, self.partitions)

    async def _start_or_stop(self, stop: asyncio.Event) -> ActiveVersion | None:
        """:meth:`prepare`, abandoned when ``stop`` is set first (a long build resumes next time)."""
        starting = asyncio.ensure_future(self.prepare())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        return None if starting.cancelled() else starting.result()

    async def _start_retried(self, stop: asyncio.Event) -> ActiveVersion | None:
        """:meth:`prepare`, retried with backoff while NATS or PostgreSQL is away; None if stopped."""
        backoff = 0.2
        while not stop.is_set():
            try:
                active = await self._start_or_stop(stop)
                if active is None:
                    return None
            except _START_ERRORS as exc:
                away = self._nats_address() if isinstance(exc, nats.errors.Error) else self._database
                self.outage.failed(away, exc)
                await sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, 10.0)
                continue
            self.outage.recovered()
            return active
        return None

    async def _bind_retried(
        self, stop: asyncio.Event, partition: int, partitions: int
    ) -> JetStreamContext.PullSubscription | None:
        """:meth:`bind`, retried with backoff while NATS is away; None if stopped first."""
        backoff = 0.2
        while not stop.is_set():
            try:
                sub = await self.bind(partition, partitions)
            except (nats.errors.Error, OSError) as exc:
                self.outage.failed(self._nats_address(), exc)
                await sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, 10.0)
                continue
            self.outage.recovered()
            return sub
        return None

    def _nats_connected(self) -> bool:
        return bool(self.js._nc.is_connected)  # nats-py has no public accessor on the context

    def _nats_address(self) -> str:
        url = self.js._nc.connected_url
        return f"NATS {url.netloc}" if url is not None else "NATS"

    async def run_batch(self, msgs: list[Msg], partition: int | None = None) -> None:
        """Apply one fetched batch (of ``partition``, when partitioned) and settle its messages
        (ack, park or retry).

        :raises ProjectionCodeMismatch: the active read model was built by other code; the
            messages are left to be redelivered to a runner with matching code.
        :raises PartitionsChanged: the active version has another partition count (likewise).
        :raises LeaseLost: this runner no longer holds ``partition`` (nothing was committed).
        """
        items = sorted((self._decode(m) for m in msgs), key=_position)
        applied = self.stats.applied
        heartbeat = asyncio.create_task(self._heartbeat([i.msg for i in items]))
        try:
            await self._apply_redoing(items, partition)
            if failpoints.enabled("projector.deliver_twice"):
                # Again, committed apart: a redelivery after a lost ack.
                await self._apply_redoing(items, partition)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await failpoints.hit_async("projector.after_commit")
        await self._settle_quietly(items)
        self.stats.batches += 1
        parked = sum(1 for i in items if i.outcome is Outcome.PARK)
        self.metrics.batch(msgs, applied=self.stats.applied - applied, parked=parked)

    def _decode(self, msg: Msg) -> _Item:
        try:
            event = decode_body(msg.data)
        except ValueError as exc:
            return _Item(msg, None, f"undecodable message: {describe_error(exc)}")
        version, payload = self.registry.upcast(event.event_type, event.event_version, event.payload)
        if version != event.event_version:
            event = event.model_copy(update={"event_version": version, "payload": payload})
        return _Item(msg, event)

    async def _apply_redoing(self, items: list[_Item], partition: int | None) -> None:
        """Apply the batch without a savepoint; if a handler failed (rare), redo it in a new
        transaction with one, so that only the failing events carry an error."""
        try:
            await self._apply(items, partition, savepoint=False)
        except BatchFailed:
            await self._apply(items, partition, savepoint=True)

    async def _apply(self, items: list[_Item], partition: int | None, *, savepoint: bool) -> None:
        name, projection = self.projection.name, self.projection
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_shared(conn, name)
            if partition is None:
                active, holds = await active_version(conn, name), True
            else:  # the active version and the fence in one round trip
                active, holds = await active_fenced(conn, name, partition, self.runner_id)
            if active is None:
                raise ProjectionNotInitialized(name)
            self._require_version(active)
            if partition is None:
                await lock_checkpoint(conn, name, active.version)
            elif not holds:
                raise LeaseLost(name, partition, active.partitions)
            tables = self.projection.tables_at(active.version)
            raw = [(item, item.event) for item in items if item.event is not None]
            plain = await self.store.open_events([event for _, event in raw])  # parked ones stay sealed
            decoded = [(item, event) for (item, _), event in zip(raw, plain, strict=True)]
            with using_vault(self.store.vault), _untraced_span(name, decoded):
                results = await apply_batch(
                    conn,
                    projection,
                    active.version,
                    tables,
                    [event for _, event in decoded],
                    around=_around(name, decoded),
                    savepoint=savepoint,
                )
            for (item, _), result in zip(decoded, results, strict=True):
                item.error = result.error
                self.stats.duplicates += 0 if result.applied or result.error else 1
            applied, position = sum(r.applied for r in results), 0
            for item in items:
                if item.error is None:
                    item.outcome = Outcome.ACK
                elif item.msg.metadata.num_delivered >= self.config.max_deliver:
                    deliveries = _deliveries(item)
                    await park(
                        conn, name, active.version, _event_id(item), item.event, item.error, deliveries
                    )
                    item.outcome = Outcome.PARK
                else:
                    item.outcome = Outcome.RETRY
                if item.outcome is not Outcome.RETRY and item.event is not None:
                    position = max(position, item.event.position)
            if partition is None:
                await advance_checkpoint(conn, name, active.version, position, applied)
            else:
                await advance_partition(conn, name, active.version, partition, position, applied)
        self.stats.applied += applied

    async def _settle_quietly(self, items: list[_Item]) -> None:
        """Ack, terminate or nak; a lost ack only means a redelivery, which is skipped."""
        for item in items:
            try:
                if item.outcome is Outcome.ACK:
                    await item.msg.ack()
                elif item.outcome is Outcome.PARK:
                    self.stats.parked += 1
                    log.error("%s: parked event %s: %s", self.projection.name, _event_id(item), item.error)
                    await item.msg.term()
                else:
                    if item.error is not None:
                        self.stats.failures += 1
                        log.warning(
                            "%s: event %s failed: %s", self.projection.name, _event_id(item), item.error
                        )
                    await item.msg.nak(delay=self.config.retry_delay * _deliveries(item))
            except nats.errors.Error as exc:
                log.warning("%s: could not settle a message (%r): it comes again", self.projection.name, exc)

    async def _heartbeat(self, msgs: list[Msg]) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for msg in msgs:
                with contextlib.suppress(nats.errors.Error):
                    await msg.in_progress()


def _around(projection: str, decoded: list[tuple[_Item, RecordedEvent]]) -> Around:
    """A handling span per event stored with a trace context (it joins the request's trace); none
    for the others, which :func:`_untraced_span` covers."""
    traced = {id(event): item.msg.headers for item, event in decoded if carries_trace(event)}  # by object

    def around(event: RecordedEvent) -> AbstractContextManager[object]:
        if id(event) in traced:
            return handling_span(projection, event, traced[id(event)])
        return contextlib.nullcontext()

    return around


def _untraced_span(
    projection: str, decoded: list[tuple[_Item, RecordedEvent]]
) -> AbstractContextManager[object]:
    """One span for the batch's events stored without a trace context (none if it has none)."""
    untraced = [(item, event) for item, event in decoded if not carries_trace(event)]
    if not untraced:
        return contextlib.nullcontext()
    return batch_handling_span(projection, [e for _, e in untraced], [i.msg.headers for i, _ in untraced])


def _require_filters(js: JetStreamContext, wanted: ConsumerConfig, kept: ConsumerConfig) -> None:
    """:raises ConsumerFiltersIgnored: the server did not keep every subject filter asked for
    (nats-server < 2.10 ignores ``filter_subjects`` and delivers everything)."""
    asked = sorted(wanted.filter_subjects or [])
    held = sorted(kept.filter_subjects or ([kept.filter_subject] if kept.filter_subject else []))
    if held != asked:
        server = str(js._nc.connected_server_version)  # nats-py has no public accessor on the context
        raise ConsumerFiltersIgnored(wanted.durable_name or "", asked, held, server)


def _position(item: _Item) -> int:
    return item.event.position if item.event is not None else 2**62


def _deliveries(item: _Item) -> int:
    return int(item.msg.metadata.num_delivered or 1)


def _event_id(item: _Item) -> uuid.UUID:
    if item.event is not None:
        return item.event.event_id
    try:
        return uuid.UUID((item.msg.headers or {}).get(MSG_ID, ""))
    except ValueError:  # not one of ours: name it by its place in the stream
        meta = item.msg.metadata
        return uuid.uuid5(uuid.NAMESPACE_URL, f"nats:{meta.stream}:{meta.sequence.stream}")
