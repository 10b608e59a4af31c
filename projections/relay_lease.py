"""Which relay publishes: a lease held as a PostgreSQL session advisory lock, one per stream.

Any number of relays may run for one stream; the one whose session holds the lock publishes,
the others stand by and try again every ``poll_seconds``. The lock lives as long as the leader's
session: when the leader dies, PostgreSQL ends the session and releases it, and a standby takes
over at its next try (within ``poll_seconds`` plus the time to load the checkpoint). A leader
cut off from PostgreSQL is noticed on both sides: the session's TCP keepalives
(:data:`KEEPALIVES`) let the server end it within a few seconds, and the leader's own ping of
the session fails, upon which it stops publishing before its next batch. What the old leader
published while the new one started from the shared checkpoint carries the same message ids,
so JetStream's duplicate window drops it.

The lease has its own connection, outside any pool, so that no pooled connection's reset (which
runs ``pg_advisory_unlock_all()``) can release it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from projections.base import TRANSIENT_ERRORS
from projections.wakeup import Outage, address_of, sleep_or_stop

log = logging.getLogger(__name__)

_KEY = "hashtextextended('memsaga.relay:' || $1::text, 0)"
_TRY = f"SELECT pg_try_advisory_lock({_KEY})"
_HOLDER = f"""SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND ((l.classid::bigint << 32) | l.objid::bigint) = {_KEY}"""
KEEPALIVES = {"tcp_keepalives_idle": "2", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3"}
"""Server-side keepalives of the lease's session: a leader gone from the network loses it in
about 5 s instead of the operating system's default of hours."""
_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.InternalClientError)
_PING_ERRORS: tuple[type[BaseException], ...] = (*_ERRORS, TimeoutError)


class RelayLease:
    """The right to publish to ``stream``, from the database at ``dsn``."""

    def __init__(
        self,
        dsn: str,
        stream: str,
        *,
        poll_seconds: float = 1.0,
        backoff: tuple[float, float] = (0.2, 10.0),
        outage: Outage | None = None,
    ) -> None:
        self.dsn = dsn
        self.stream = stream
        self.poll_seconds = poll_seconds
        self.backoff = backoff
        """First and longest wait between attempts while PostgreSQL is unreachable."""
        self.outage = outage or Outage(f"relay {stream}", log)
        """Where an unreachable PostgreSQL is reported (the relay's own reporter: one line each way)."""
        self.retries = 0
        """Failed attempts to reach PostgreSQL for the lease (the relay adds them to its stats)."""
        self._conn: asyncpg.Connection | None = None
        self._pinger: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether this relay holds the lease (its session is open and answered its last ping)."""
        return self._conn is not None and not self._conn.is_closed() and self._pinger is not None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this relay holds the lease (True), or ``stop`` is set first (False).

        Says once that it stands by while another relay leads, and keeps trying through a
        PostgreSQL outage (reported once, by :attr:`outage`).
        """
        announced, backoff = False, self.backoff[0]
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, server_settings=KEEPALIVES, timeout=10)
                taken = await self._conn.fetchval(_TRY, self.stream)
                self.outage.recovered()
                backoff = self.backoff[0]
                if taken:
                    self._pinger = asyncio.create_task(self._ping(self._conn))
                    log.info("relay %s: leading (holds the relay lease)", self.stream)
                    return True
                if not announced:
                    holder = await self._conn.fetchval(_HOLDER, self.stream)
                    log.info(
                        "relay %s: standing by, another relay publishes (PostgreSQL backend %s);"
                        " taking over when it stops",
                        self.stream,
                        holder,
                    )
                    announced = True
            except _ERRORS as exc:
                await self._drop()
                self.retries += 1
                self.outage.failed(address_of(self.dsn), exc)
                await sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, self.backoff[1])
                continue
            await sleep_or_stop(self.poll_seconds, stop)
        return False

    async def release(self) -> None:
        """Give the lease up (closing the session releases the lock)."""
        await self._drop()

    async def _ping(self, conn: asyncpg.Connection) -> None:
        """Check the session every ``poll_seconds``; on failure the lease is lost (``held`` False)."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=max(2 * self.poll_seconds, 2.0))
            except _PING_ERRORS as exc:
                log.warning("relay %s: lost the relay lease; stopping before the next batch", self.stream)
                self.outage.failed(address_of(self.dsn), exc)
                conn.terminate()
                self._pinger = None
                return

    async def _drop(self) -> None:
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except _PING_ERRORS:
                conn.terminate()
