"""The memsaga worker's run loop; :mod:`memsaga.bootstrap` builds what it runs.

``memsaga worker`` runs :func:`run_worker`: it waits (with backoff) for Temporal and
PostgreSQL, polls the task queue until told to stop, then stops gracefully (activities in
flight get :data:`~memsaga.bootstrap.GRACEFUL_SHUTDOWN` to finish). Once running it outlives
restarts of either: Temporal's pollers retry until the frontend answers again, and the pool
replaces connections that died.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from memsaga.bootstrap import (
    StoppedWhileWaiting,
    build_activities,
    build_stores,
    build_worker,
    check_adapters,
    check_master_key,
    master_key,
    wait_for,
    wait_for_pool,
)
from memsaga.client import connect
from memsaga.errors import TemporalUnreachable
from memsaga.settings import Settings
from projections.wakeup import Outage, sleep_or_stop

log = logging.getLogger(__name__)

ROLE = "memsaga-worker"
WATCH_SECONDS = 5.0
"""How often a running worker checks that Temporal answers (to report an outage once)."""


async def wait_for_temporal(settings: Settings, stop: asyncio.Event, *, role: str = ROLE) -> Client:
    """A Temporal client, waiting (with backoff) while the frontend does not answer.

    :raises StoppedWhileWaiting: ``stop`` was set first.
    """
    address = settings.require_temporal_address()

    async def attempt() -> Client:
        try:
            return await connect(settings)
        except RuntimeError as exc:  # temporalio's connect error
            raise TemporalUnreachable(address, exc) from exc

    return await wait_for(
        attempt, role=role, service="Temporal", address=address, retried=(TemporalUnreachable,), stop=stop
    )


async def run_worker(
    settings: Settings, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None
) -> bool:
    """Run a worker until ``stop`` is set; ``on_ready`` is called once it polls.

    Returns False when ``stop`` came while it still waited for a service (it never polled).

    :raises AdapterError: the configured extractor or embedder cannot work (checked first).
    """
    check_adapters(settings)
    master_key(settings)  # a missing or malformed key stops the worker before it waits for anything
    try:
        client = await wait_for_temporal(settings, stop)
        pool = await wait_for_pool(settings, stop, role=ROLE)
    except StoppedWhileWaiting as exc:
        log.info("%s", exc)
        return False
    activities = build_activities(pool, settings)
    try:
        await check_master_key(build_stores(pool, settings)[0])
    except BaseException:
        await pool.close()
        raise
    watch = asyncio.create_task(_watch_temporal(client, settings.require_temporal_address(), stop))
    try:
        async with build_worker(client, activities, task_queue=settings.task_queue):
            if on_ready is not None:
                on_ready()
            await stop.wait()
    finally:
        watch.cancel()
        await asyncio.wait([watch])
        await pool.close()
    return True


async def _watch_temporal(client: Client, address: str, stop: asyncio.Event) -> None:
    """Log once when Temporal stops answering and once when it is back (its pollers retry alone)."""
    outage = Outage(ROLE, log)
    while not stop.is_set():
        try:
            healthy = await client.service_client.check_health(timeout=timedelta(seconds=WATCH_SECONDS))
            problem: BaseException | None = None if healthy else RuntimeError("not serving")
        except (RPCError, RuntimeError) as exc:
            problem = exc
        if problem is None:
            outage.recovered()
        else:
            outage.failed(f"Temporal at {address} (its pollers retry)", problem)
        await sleep_or_stop(WATCH_SECONDS, stop)
