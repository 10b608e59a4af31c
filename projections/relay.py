"""The outbox relay: publishes every stored event to JetStream, in order, losing none.

It follows the event store's gap-safe tail (``PostgresEventStore.tail``), reading the next
batch while the current one is sent. Each batch goes out through ``publish_async`` (all its
messages at once) with the event id as ``Nats-Msg-Id``, and the relay sends the next batches
while its acks are outstanding, up to ``max_in_flight`` batches (:mod:`projections.relay_window`);
once a read finds less than a full batch (caught up), up to ``max_in_flight_caught_up``, so that
what arrives during an ack goes out together instead of as many tiny batches, each a read, a
span and a checkpoint commit.
The checkpoint in PostgreSQL moves strictly in order: over the oldest batches whose every ack
is in, in one commit, while later batches are in flight. Any failure (an ack that failed or
did not come within ``publish_timeout``, a send, a read, the checkpoint's commit) gives the
whole window back, and after a backoff everything after the checkpoint is sent again: the
stream's duplicate window drops what JetStream had stored (projections de-duplicate by event
id anyway). So does a crash: a restart re-sends at most the window. Messages reach the stream in
position order, except after a failure that lost a message of the window while JetStream
stored later ones: the re-send stores it behind them. NATS down: retried with capped
exponential backoff until it goes through. Nothing is ever published from inside a database
transaction.

Several relays may run for one stream: one publishes, the others stand by and take over when it
stops (:mod:`projections.relay_lease`, a PostgreSQL session advisory lock).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
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
from projections.relay_window import InFlight, PublishWindow
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
    max_in_flight: int = 4  # batches sent whose acks or checkpoint are outstanding
    max_in_flight_caught_up: int = 1  # the same once a read finds less than a full batch


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


@dataclass
class _Run:
    """One leading run: its tail, the window in flight, and batches to send again (oldest first)."""

    tail: EventTail
    to_position: int | None
    window: PublishWindow
    resend: deque[list[RecordedEvent]] = field(default_factory=deque)
    ahead: asyncio.Task[list[RecordedEvent]] | None = None  # the next batch, read meanwhile
    sending: list[RecordedEvent] | None = None  # the batch being sent
    read_to: int = 0  # position of the last event read from the tail
    caught_up: bool = False  # the last read of the tail was not a full batch

    @property
    def read_all(self) -> bool:
        """Whether a bounded run has read up to its last position."""
        return self.to_position is not None and self.read_to >= self.to_position

    def give_back(self, error: BaseException) -> None:
        """After a failure: everything sent and not checkpointed is to be sent again, in order."""
        batches = self.window.abandon(error)
        if self.sending is not None:
            batches.append(self.sending)
            self.sending = None
        self.resend.extendleft(reversed(batches))


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
        run = _Run(self.store.tail(after_position=start), to_position, PublishWindow(cfg.max_in_flight))
        self.stats.position = start
        log.info("relay to %s from position %d (checkpoint %d)", cfg.stream, start, checkpoint)
        backoff = cfg.initial_backoff
        try:
            while not stop.is_set() and (to_position is None or self.stats.position < to_position):
                if lease is not None and not lease.held:
                    break  # deposed: another relay publishes from the checkpoint
                try:
                    if await self._step(run, stop):
                        backoff = cfg.initial_backoff
                except RETRIED_ERRORS as exc:
                    # Whatever failed, everything after the checkpoint is sent again (re-sends are
                    # dropped by the duplicate window); the checkpoint moves only over acked batches.
                    run.give_back(exc)
                    self.stats.retries += 1
                    self.outage.failed(self._service_of(exc), exc)
                    await sleep_or_stop(backoff, stop)
                    backoff = min(backoff * 2, cfg.max_backoff)
                    if isinstance(exc, nats.js.errors.NoStreamResponseError):
                        await self._provision(stop)  # no stream answers: it may have been deleted
            if lease is None or lease.held:
                await self._drain(run)
        finally:
            run.window.abandon(asyncio.CancelledError())
            if run.ahead is not None:  # stopped while reading ahead: that read is not wanted
                run.ahead.cancel()
                await asyncio.wait([run.ahead])
                if not run.ahead.cancelled():
                    run.ahead.exception()  # retrieved: a failed read ahead is just dropped
            await self.wakeup.close()
        return self.stats

    async def _step(self, run: _Run, stop: asyncio.Event) -> bool:
        """One move: checkpoint the acked batches; else send the next batch if the window has
        room; else wait (for an ack, the read ahead, or an append). Whether it made progress
        (a checkpoint moved, or all is published and idle)."""
        if await self._settle(run.window):
            return True
        caught_up = run.caught_up and len(run.window) >= self.config.max_in_flight_caught_up
        if run.window.full or caught_up or (run.read_all and not run.resend):
            # Not empty: a bounded run ends once all it read is checkpointed. Caught up, what
            # arrives meanwhile goes out together once an ack is in (small batches cost CPU).
            await run.window.wait()
            return False
        batch = await self._next_batch(run)
        if batch is None:
            return False  # an ack came before the read ahead
        if not batch:
            await self._idle(run, stop)
            return not run.window
        if len(batch) >= self.config.batch_size:
            await self.wakeup.disarm()  # behind: it reads again at once, appends need not ring
        run.sending = batch
        if run.ahead is None and not run.read_all:
            # One read at a time, in tail order: this one is awaited before the next starts.
            run.ahead = asyncio.create_task(self._read(run.tail, run.to_position))
        await failpoints.hit_async("relay.before_publish")
        run.window.add(await self._send(batch))
        run.sending = None
        return False

    async def _next_batch(self, run: _Run) -> list[RecordedEvent] | None:
        """The next batch to send: one given back after a failure, else the tail's next (empty:
        none yet); None when an ack of the window came first."""
        if run.resend:
            return run.resend.popleft()
        if run.ahead is None:
            run.ahead = asyncio.create_task(self._read(run.tail, run.to_position))
        if run.window and not run.ahead.done():
            await run.window.wait(run.ahead)
            if not run.ahead.done():
                return None
        reading, run.ahead = run.ahead, None
        batch = await reading
        run.caught_up = len(batch) < self.config.batch_size
        if batch:
            run.read_to = batch[-1].position
        return batch

    async def _idle(self, run: _Run, stop: asyncio.Event) -> None:
        """Nothing new to read: wait for the bell (or the poll interval), or an ack of the window."""
        self.outage.recovered()  # the read worked
        await self.metrics.lag(self.store, self.stats.position)
        if await self.wakeup.arm():
            return  # armed just now: look once more, then trust the bell
        oldest = run.window.oldest
        if oldest is None:
            await self.wakeup.wait(self.config.poll_interval, stop)
        else:
            timeout = min(self.config.poll_interval, run.window.time_left())
            await self.wakeup.wait(timeout, stop, oldest.all_acked)

    async def _settle(self, window: PublishWindow) -> bool:
        """Checkpoint the oldest batches JetStream acknowledged in full (if any), in order.

        :raises: a failed ack, or :class:`AckTimeout` for the oldest batch.
        """
        acked = window.acked()
        if not acked:
            return False
        await self._checkpoint(acked)
        window.pop(len(acked))
        return True

    async def _checkpoint(self, acked: list[InFlight]) -> None:
        """Move the checkpoint over ``acked`` (oldest first, every ack in) in one commit."""
        await failpoints.hit_async("relay.after_publish")
        position = acked[-1].last_position
        count = sum(len(batch.events) for batch in acked)
        await save_checkpoint(self.pool, self.config.stream, position, count)
        for batch in acked:
            duplicates = batch.duplicates()
            self.stats.batches += 1
            self.stats.published += len(batch.events)
            self.stats.duplicates += duplicates
            self.metrics.published(len(batch.events), duplicates)
        self.stats.position = position
        self.outage.recovered()
        await self.metrics.lag(self.store, position)

    async def _drain(self, run: _Run) -> None:
        """Stopping: checkpoint what is in flight once acked (until a failure or the deadline)."""
        while run.window:
            try:
                if not await self._settle(run.window):
                    await run.window.wait()
            except RETRIED_ERRORS:
                return  # sent again from the checkpoint by whoever publishes next

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

    async def _send(self, events: list[RecordedEvent]) -> InFlight:
        """Send every message of a batch (acks not awaited: see :class:`PublishWindow`).

        :raises: a failure to send, after cancelling the acks of what was sent.
        """
        cfg = self.config
        if not _connected(self.js):
            raise nats.errors.ConnectionReconnectingError  # retried: nothing is sent meanwhile
        stream = cfg.stream
        subjects = [event_subject(e, cfg.subject_prefix) for e in events]
        spans = start_batch_trace(stream, events, subjects)
        acks: list[asyncio.Future[PubAck]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.publish_timeout
        try:
            async with asyncio.timeout_at(deadline):
                for event, subject, trace_headers in zip(events, subjects, spans.headers, strict=True):
                    headers = event_headers(event, msg_id=self._msg_id(event))
                    headers.update(trace_headers)
                    body = event_body(event)
                    acks.append(await self.js.publish_async(subject, body, stream=stream, headers=headers))
        except BaseException as exc:
            for ack in acks:
                ack.cancel()  # frees its slot in nats-py's pending acks
            spans.fail(exc)
            raise
        return InFlight(events, acks, spans, deadline)


def _connected(js: JetStreamContext) -> bool:
    # nats-py's publish_async registers an ack future (and takes one of its pending slots)
    # before sending; a send that fails, which only happens while disconnected, leaves both
    # behind for good. So a batch is not sent while the connection is down.
    return bool(js._nc.is_connected)
