"""The relay's publish window: batches sent to JetStream whose acks or checkpoint are outstanding.

The relay sends batch n+1 while batch n's acks are in flight (each JetStream write is synced,
so an ack takes a disk flush). The checkpoint moves strictly in order, over the oldest batches
whose every ack is in; a batch behind an unacknowledged one waits for it. On any failure the
whole window is given back (acks cancelled, spans ended with the error) to be sent again from
the last committed checkpoint: JetStream's duplicate window drops what it had stored already.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import PubAck

from eventstore import RecordedEvent
from projections.tracing import BatchTrace


class AckTimeout(TimeoutError):
    """JetStream did not acknowledge every message of the oldest batch in flight in time."""


@dataclass
class InFlight:
    """One batch sent: its events, one ack future per event, its spans and its deadline (loop time)."""

    events: list[RecordedEvent]
    acks: list[asyncio.Future[PubAck]]
    trace: BatchTrace
    deadline: float
    all_acked: asyncio.Future[list[PubAck]] = field(init=False)
    traced: bool = field(default=False, init=False)  # spans ended

    def __post_init__(self) -> None:
        # Resolves when every ack is in, or at the first failure (which acked() reports).
        self.all_acked = asyncio.gather(*self.acks)
        self.all_acked.add_done_callback(_retrieved)

    @property
    def last_position(self) -> int:
        return self.events[-1].position

    def duplicates(self) -> int:
        """How many messages JetStream called duplicates (every ack in)."""
        return sum(1 for ack in self.acks if ack.result().duplicate)


class PublishWindow:
    """At most ``limit`` batches in flight, oldest first."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self._batches: deque[InFlight] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def full(self) -> bool:
        return len(self._batches) >= self.limit

    def add(self, batch: InFlight) -> None:
        self._batches.append(batch)

    def acked(self) -> list[InFlight]:
        """The oldest batches whose every ack is in, in order (still in the window: see :meth:`pop`).

        Their spans are ended here. A failed batch behind them is reported at the next call,
        once they are checkpointed.

        :raises: the first failed ack of the oldest batch, when it has one.
        :raises AckTimeout: the oldest batch is past its deadline.
        """
        done: list[InFlight] = []
        for batch in self._batches:
            if not batch.all_acked.done():
                break
            error = batch.all_acked.exception()
            if error is not None:
                if done:
                    break
                raise error
            done.append(batch)
        for batch in done:
            if not batch.traced:
                batch.traced = True
                batch.trace.end([bool(ack.result().duplicate) for ack in batch.acks])
        if not done and self._batches and asyncio.get_running_loop().time() > self._batches[0].deadline:
            first = self._batches[0]
            raise AckTimeout(
                f"no ack for positions {first.events[0].position}..{first.last_position} in time"
            )
        return done

    def pop(self, count: int) -> None:
        """Drop the ``count`` oldest batches (checkpointed)."""
        for _ in range(count):
            self._batches.popleft()

    @property
    def oldest(self) -> InFlight | None:
        """The batch the checkpoint waits for."""
        return self._batches[0] if self._batches else None

    def time_left(self) -> float:
        """Seconds until the oldest batch's deadline (0 when past it; infinite when empty)."""
        if not self._batches:
            return float("inf")
        return max(self._batches[0].deadline - asyncio.get_running_loop().time(), 0.0)

    async def wait(self, *others: asyncio.Future[Any], timeout: float | None = None) -> None:
        """Until the oldest batch is acked (or failed), its deadline, ``timeout``, or one of ``others``."""
        if not self._batches:
            raise RuntimeError("nothing in flight to wait for")
        limit = min(self.time_left(), float("inf") if timeout is None else timeout)
        waiting = [self._batches[0].all_acked, *others]
        await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)

    def abandon(self, error: BaseException) -> list[list[RecordedEvent]]:
        """Give every batch back, oldest first, to be sent again: acks cancelled, spans failed."""
        batches = list(self._batches)
        self._batches.clear()
        for batch in batches:
            for ack in batch.acks:
                ack.cancel()  # frees its slot among nats-py's pending acks
            if not batch.traced:
                batch.traced = True
                batch.trace.fail(error)
        return [batch.events for batch in batches]


def _retrieved(future: asyncio.Future[list[PubAck]]) -> None:
    if not future.cancelled():
        future.exception()  # marked retrieved: a failure is raised by acked(), or dropped by abandon()
