"""One runner's share of a partitioned projection: leases kept, one consumer loop per partition.

Every ``lease_interval`` seconds the runner renews its registration and leases and moves
towards its fair share (:class:`~projections.partition_leases.PartitionLeases`). For each
partition it holds it runs a loop on that partition's durable consumer
(:meth:`~projections.runner.ProjectionRunner.consume`); a partition it gives up is stopped
first (its batch in flight finishes and is acked) and released after, so the next holder
starts where it stopped. A partition whose lease it lost (expired while PostgreSQL was away,
say) is stopped too; its batches could not have committed anyway (the fence). On a clean stop
it releases everything, so the other runners take over at their next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from projections.partition_leases import PartitionLeases
from projections.relay import DATABASE_ERRORS
from projections.wakeup import sleep_or_stop

if TYPE_CHECKING:
    from projections.runner import ProjectionRunner

log = logging.getLogger(__name__)


class PartitionedRun:
    """Applies the partitions ``runner`` holds of a version with ``partitions`` partitions."""

    def __init__(self, runner: ProjectionRunner, partitions: int) -> None:
        self.runner = runner
        self.partitions = partitions
        cfg = runner.config
        self.leases = PartitionLeases(
            runner.pool, runner.projection.name, partitions, runner_id=runner.runner_id, ttl=cfg.lease_ttl
        )
        self._workers: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._again = False  # a claim lost a race: tick again soon, not after a whole interval

    @property
    def held(self) -> set[int]:
        """The partitions this runner applies now."""
        return set(self._workers)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the leases and the partition loops until ``stop`` is set.

        :raises ProjectionCodeMismatch, PartitionsChanged: from a partition's loop (all stop).
        """
        name = self.runner.projection.name
        try:
            while not stop.is_set():
                try:
                    await self._tick()
                    self.runner.outage.recovered()
                except DATABASE_ERRORS as exc:
                    self.runner.outage.failed(self.runner._database, exc)
                self._raise_failed()
                await self._wait(stop)
        finally:
            await self._stop_workers(set(self._workers))
            try:
                await self.leases.leave()
            except DATABASE_ERRORS as exc:  # the leases expire by themselves
                log.warning("%s: could not release its partitions (%r): they expire", name, exc)

    async def _tick(self) -> None:
        held = await self.leases.renew()
        lost = self.held - held
        if lost:
            log.warning("%s: lost partition(s) %s; stopping them", self.runner.projection.name, sorted(lost))
            await self._stop_workers(lost)
        move = await self.leases.plan()
        if move.release:
            await self._stop_workers(set(move.release))
            await self.leases.release(set(move.release))
            held -= set(move.release)
        self._again = False
        if move.claim:
            taken = await self.leases.claim(move.claim)
            self._again = len(taken) < len(move.claim)
            held |= taken
        for partition in sorted(held - self.held):
            self._start_worker(partition)
        if move.release or move.claim or lost:
            log.info(
                "%s: applies partition(s) %s of %d",
                self.runner.projection.name,
                sorted(self.held),
                self.partitions,
            )

    def _start_worker(self, partition: int) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self._worker(partition, stop))
        self._workers[partition] = (task, stop)

    async def _worker(self, partition: int, stop: asyncio.Event) -> None:
        sub = await self.runner._bind_retried(stop, partition, self.partitions)
        if sub is not None:
            await self.runner.consume(sub, stop, partition)

    async def _stop_workers(self, partitions: set[int]) -> None:
        stopping = [self._workers.pop(p) for p in partitions if p in self._workers]
        for _, stop in stopping:
            stop.set()
        if stopping:
            await asyncio.gather(*(task for task, _ in stopping), return_exceptions=True)

    def _raise_failed(self) -> None:
        """Forget loops that ended (a lost lease); raise what one of them raised."""
        for partition, (task, _) in list(self._workers.items()):
            if task.done():
                del self._workers[partition]
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    async def _wait(self, stop: asyncio.Event) -> None:
        """Until the next tick, or a partition's loop ends, or ``stop``."""
        interval = self.runner.config.lease_interval
        if self._again:
            interval = min(interval, 0.2)
        tasks = [task for task, _ in self._workers.values()]
        if not tasks:
            await sleep_or_stop(interval, stop)
            return
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([*tasks, stopping], timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
