"""The outbox relay: publishes every stored event to JetStream, in order, losing none.

It follows the event store's gap-safe tail (``PostgresEventStore.tail``), reading the next
batch while the current one is published. It publishes each batch pipelined (all messages
in flight at once through ``publish_async``, every ack awaited, within ``publish_timeout``)
with the event id as ``Nats-Msg-Id``, and moves its checkpoint in PostgreSQL only after
JetStream acknowledged the whole batch; batches go out one after the other, in order. A
crash between publish and checkpoint re-sends at most one batch, which the stream's
duplicate window drops (and projections de-duplicate by event id anyway). NATS down: the
batch is retried with capped exponential backoff until it goes through. Nothing is ever
published from inside a database transaction.

Several relays may run for one stream: one publishes, the others stand by and take over when it
stops (:mod:`projections.relay_lease`, a PostgreSQL session advisory lock).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import asyncpg
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from eventstore import EventTail, PostgresEventStore, RecordedEvent, failpoints
from projections.base import TRANSIENT_ERRORS
from projections.metrics import RelayMetrics
from projections.relay_lease import RelayLease
from projections.stream import DEFAULT_DUPLICATE_WINDOW, DEFAULT_STREAM, ensure_stream
from projections.subjects import DEFAULT_PREFIX, event_body, event_headers, event_subject
from projections.tracing import start_batch_trace
from projections.wakeup import AppendWakeup, Outage, address_of, sleep_or_stop

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a NATS or PostgreSQL outage looks like to the relay: retried, never fatal.
NATS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, OSError)
# asyncpg can also fail a query with InternalClientError ("cannot switch to state …; another
# operation is in progress") on a connection the server just closed: the pool replaces it.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.InternalClientError)
RETRIED_ERRORS = NATS_ERRORS + DATABASE_ERRORS


@dataclass(frozen=True)
class RelayConfig:
    """Tuning of the relay; ``stream`` also names its checkpoint."""

    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_PREFIX
    batch_size: int = 256
    poll_interval: float = 1.0
    publish_timeout: float = 5.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    accept_stream_limits: bool = False
    replicas: int | None = None  # of the stream it creates or scales up (None: 1, an existing one as it is)
    lease_poll_seconds: float = 1.0  # how often a standing-by relay tries to take the lease


@dataclass
class RelayStats:
    """What one run of the relay did."""

    published: int = 0
    duplicates: int = 0
    batches: int = 0
    retries: int = 0
    position: int = 0
    errors: list[str] = field(default_factory=list)


async def load_checkpoint(pool: asyncpg.Pool, stream: str) -> int:
    """The relay's checkpoint for ``stream`` (created at 0 the first time)."""
    await pool.execute(
        "INSERT INTO memsaga.relay_checkpoints (stream) VALUES ($1) ON CONFLICT DO NOTHING", stream
    )
    position = await pool.fetchval("SELECT position FROM memsaga.relay_checkpoints WHERE stream = $1", stream)
    return int(position)


@dataclass(frozen=True)
class RelayCheckpoint:
    """A relay's checkpoint row: position, events published, last update (None: never ran)."""

    position: int
    published: int
    updated_at: datetime | None


async def read_checkpoint(pool: asyncpg.Pool, stream: str) -> RelayCheckpoint:
    """The relay checkpoint of ``stream`` without creating it (position 0 when it never ran)."""
    row = await pool.fetchrow(
        "SELECT position, published, updated_at FROM memsaga.relay_checkpoints WHERE stream = $1", stream
    )
    if row is None:
        return RelayCheckpoint(0, 0, None)
    return RelayCheckpoint(int(row["position"]), int(row["published"]), row["updated_at"])


async def save_checkpoint(pool: asyncpg.Pool, stream: str, position: int, published: int) -> None:
    """Move the checkpoint forward (never back: a republished old range leaves it alone)."""
    await pool.execute(
        """UPDATE memsaga.relay_checkpoints SET position = greatest(position, $2),
               published = published + $3, updated_at = now() WHERE stream = $1""",
        stream,
        position,
        published,
    )


class Relay:
    """Tails the event store and publishes to JetStream; see the module docstring."""

    def __init__(
        self,
        store: PostgresEventStore,
        js: JetStreamContext,
        config: RelayConfig | None = None,
        *,
        listen_dsn: str | None = None,
    ) -> None:
        self.store = store
        self.pool = store.pool
        self.js = js
        self.config = config or RelayConfig()
        self.wakeup = AppendWakeup(listen_dsn, doorbell=self.config.stream)
        self.stats = RelayStats()
        self._republish: tuple[int, str] | None = None  # (checkpoint at start, run id) of a republish
        self._listen_dsn = listen_dsn
        self.outage = Outage(f"relay {self.config.stream}", log)
        self.metrics = RelayMetrics(self.config.stream)

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        from_position: int | None = None,
        to_position: int | None = None,
    ) -> RelayStats:
        """Publish until ``stop`` is set; or, with ``to_position``, until that position (then return).

        ``from_position`` (inclusive) republishes from there instead of the checkpoint; events
        at or below the checkpoint get a message id of this run, so JetStream stores them again
        even inside its duplicate window (projections skip what they have applied).

        With a ``listen_dsn`` the relay first takes the stream's lease (standing by while another
        relay holds it), and goes back to standing by if it loses the lease. A bounded run
        (``to_position``: a republished range, beside the live relay) and a relay without a
        ``listen_dsn`` (in-process, in tests) publish without the lease.

        :raises StreamHasLimits: the stream drops history and limits were not accepted.
        :raises ValueError: ``from_position`` lies beyond the checkpoint (it would skip events).
        """
        stop = stop or asyncio.Event()
        if self._listen_dsn is None or to_position is not None:
            return await self._lead(stop, None, from_position, to_position)
        cfg = self.config
        lease = RelayLease(
            self._listen_dsn,
            cfg.stream,
            poll_seconds=cfg.lease_poll_seconds,
            backoff=(cfg.initial_backoff, cfg.max_backoff),
            outage=self.outage,
        )
        try:
            while await lease.acquire(stop):
                self.stats.retries, lease.retries = self.stats.retries + lease.retries, 0
                await self._lead(stop, lease, from_position, to_position)
                if lease.held or stop.is_set():
                    break  # done (stopped, or reached to_position), not deposed
            return self.stats
        finally:
            await lease.release()

    async def _lead(
        self,
        stop: asyncio.Event,
        lease: RelayLease | None,
        from_position: int | None,
        to_position: int | None,
    ) -> RelayStats:
        """Publish from the checkpoint while ``lease`` is held (see :meth:`run`)."""
        cfg = self.config
        await self._provision(stop)
        loaded = (
            None
            if stop.is_set()
            else await self._retried(lambda: load_checkpoint(self.pool, cfg.stream), stop)
        )
        if loaded is None:
            return self.stats  # stopped while PostgreSQL was away
        checkpoint = loaded
        if from_position is not None and from_position > checkpoint + 1:
            raise ValueError(
                f"--from-position {from_position} would skip positions {checkpoint + 1}..{from_position - 1},"
                f" which were never published: use at most {checkpoint + 1}"
            )
        start = checkpoint if from_position is None else max(from_position - 1, 0)
        if to_position is not None:
            head = await self._retried(self.store.head_position, stop)
            if head is None:
                return self.stats
            to_position = min(to_position, head)
        # A republish must land even inside the duplicate window (JetStream keeps ids it has
        # lost, e.g. after a purge), so what was published before gets a per-run message id.
        republish_id = f"republish-{uuid.uuid4().hex[:12]}"
        self._republish = (checkpoint, republish_id) if from_position is not None else None
        tail = self.store.tail(after_position=start)
        self.stats.position = start
        log.info("relay to %s from position %d (checkpoint %d)", cfg.stream, start, checkpoint)
        pending: list[RecordedEvent] = []
        ahead: asyncio.Task[list[RecordedEvent]] | None = None  # the next batch, read during a publish
        backoff = cfg.initial_backoff
        try:
            while not stop.is_set() and (to_position is None or self.stats.position < to_position):
                if lease is not None and not lease.held:
                    break  # deposed: another relay publishes from the checkpoint
                try:
                    if not pending:
                        reading, ahead = ahead, None
                        pending = await (reading or self._read(tail, to_position))
                    if not pending:
                        self.outage.recovered()  # the read worked
                        await self.metrics.lag(self.store, self.stats.position)
                        if await self.wakeup.arm():
                            continue  # armed just now: look once more, then trust the bell
                        await self.wakeup.wait(cfg.poll_interval, stop)
                        continue
                    if len(pending) >= cfg.batch_size:
                        await self.wakeup.disarm()  # behind: it reads again at once, appends need not ring
                    if ahead is None and (to_position is None or pending[-1].position < to_position):
                        # One read at a time, in tail order: this one is awaited before the next starts.
                        ahead = asyncio.create_task(self._read(tail, to_position))
                    await failpoints.hit_async("relay.before_publish")
                    await self._publish(pending)
                    await failpoints.hit_async("relay.after_publish")
                    await save_checkpoint(self.pool, cfg.stream, pending[-1].position, len(pending))
                    await self.metrics.lag(self.store, pending[-1].position)
                except RETRIED_ERRORS as exc:
                    # Whatever failed, the batch is published again (re-sends are dropped by the
                    # duplicate window) and the checkpoint moves only once both steps succeeded.
                    self.stats.retries += 1
                    self.outage.failed(self._service_of(exc), exc)
                    await sleep_or_stop(backoff, stop)
                    backoff = min(backoff * 2, cfg.max_backoff)
                    if isinstance(exc, nats.js.errors.NoStreamResponseError):
                        await self._provision(stop)  # no stream answers: it may have been deleted
                    continue
                self.outage.recovered()
                self.stats.position = pending[-1].position
                pending = []
                backoff = cfg.initial_backoff
        finally:
            if ahead is not None:  # stopped while reading ahead: that read is not wanted
                ahead.cancel()
                await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: a failed read ahead is just dropped
            await self.wakeup.close()
        return self.stats

    async def _retried(self, read: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
        """``read()`` retried with backoff through an outage; None when ``stop`` came first."""
        backoff = self.config.initial_backoff
        while not stop.is_set():
            try:
                result = await read()
            except DATABASE_ERRORS as exc:
                self.outage.failed(self._service_of(exc), exc)
                await sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, self.config.max_backoff)
                continue
            self.outage.recovered()
            return result
        return None

    def _service_of(self, exc: BaseException) -> str:
        """What an error says is away, with its address: NATS (its errors, a publish timeout)
        or PostgreSQL (anything else retried: its errors, a refused connection)."""
        if isinstance(exc, nats.errors.Error | TimeoutError):
            return self._nats_address()
        return address_of(self._listen_dsn)

    def _nats_address(self) -> str:
        url = self.js._nc.connected_url  # nats-py has no public accessor on the context
        return f"NATS {url.netloc}" if url is not None else "NATS"

    async def _read(self, tail: EventTail, to_position: int | None) -> list[RecordedEvent]:
        batch = await tail.poll(self.config.batch_size)
        self.metrics.polled(tail.waiting_on_gap)
        if to_position is not None and batch and batch[-1].position > to_position:
            batch = [e for e in batch if e.position <= to_position]
        return batch

    async def _provision(self, stop: asyncio.Event) -> None:
        backoff = self.config.initial_backoff
        while True:
            try:
                await ensure_stream(
                    self.js,
                    self.config.stream,
                    subject_prefix=self.config.subject_prefix,
                    duplicate_window=self.config.duplicate_window,
                    accept_limits=self.config.accept_stream_limits,
                    replicas=self.config.replicas,
                )
                self.outage.recovered()
                return
            except NATS_ERRORS as exc:
                if stop.is_set():
                    return  # told to stop: run() returns before reading anything
                self.outage.failed(f"JetStream ({self._nats_address()})", exc)
                await sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, self.config.max_backoff)

    def _msg_id(self, event: RecordedEvent) -> str | None:
        if self._republish is None or event.position > self._republish[0]:
            return None
        return f"{event.event_id}:{self._republish[1]}"

    async def _publish(self, events: list[RecordedEvent]) -> None:
        """Publish all at once and wait for every ack. :raises: the first failure, after all settled."""
        cfg = self.config
        if not _connected(self.js):
            raise nats.errors.ConnectionReconnectingError  # retried: nothing is sent meanwhile
        stream = cfg.stream
        subjects = [event_subject(e, cfg.subject_prefix) for e in events]
        spans = start_batch_trace(stream, events, subjects)
        acks: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(cfg.publish_timeout):
                for event, subject, trace_headers in zip(events, subjects, spans.headers, strict=True):
                    headers = event_headers(event, msg_id=self._msg_id(event))
                    headers.update(trace_headers)
                    body = event_body(event)
                    acks.append(await self.js.publish_async(subject, body, stream=stream, headers=headers))
                results = await asyncio.gather(*acks, return_exceptions=True)
        except BaseException as exc:
            for ack in acks:
                ack.cancel()  # frees its slot in nats-py's pending acks
            spans.fail(exc)
            raise
        outcomes = [r if isinstance(r, BaseException) else bool(r.duplicate) for r in results]
        spans.end(outcomes)
        failures = [r for r in outcomes if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        self.stats.batches += 1
        self.stats.published += len(outcomes)
        self.stats.duplicates += sum(1 for r in outcomes if r is True)
        self.metrics.published(len(outcomes), sum(1 for r in outcomes if r is True))


def _connected(js: JetStreamContext) -> bool:
    # nats-py's publish_async registers an ack future (and takes one of its pending slots)
    # before sending; a send that fails, which only happens while disconnected, leaves both
    # behind for good. So a batch is not sent while the connection is down.
    return bool(js._nc.is_connected)
