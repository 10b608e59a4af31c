"""Wake-ups on appends: LISTEN on a dedicated connection, with polling as the fallback.

A pooled connection drops its listener on release, so the listener owns a plain
connection. NOTIFY is only a hint: notifications sent while it is disconnected are lost,
so the waiter always times out after ``poll_interval`` and polls anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "memsaga_events"  # raised by the trigger in projections/migrations/0001_projections.sql


class AppendWakeup:
    """Sets an event when ``memsaga.events`` gets rows; reconnects when its connection drops."""

    def __init__(self, dsn: str | None, *, reconnect_every: float = 5.0) -> None:
        self.dsn = dsn
        self.reconnect_every = reconnect_every
        self.event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._last_attempt = float("-inf")

    @property
    def listening(self) -> bool:
        """Whether notifications can arrive right now."""
        return self._conn is not None and not self._conn.is_closed()

    async def ensure_listening(self) -> None:
        """(Re)connect and LISTEN when not listening; failures are logged, polling carries on."""
        if self.dsn is None or self.listening or time.monotonic() - self._last_attempt < self.reconnect_every:
            return
        self._last_attempt = time.monotonic()
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            await conn.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("cannot LISTEN for appends (%s); polling only", exc)
            return
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self.event.set()  # anything appended while we were not listening: poll once now

    async def wait(self, timeout: float, stop: asyncio.Event) -> None:
        """Until a notification, ``stop``, or ``timeout`` seconds, whichever comes first."""
        await self.ensure_listening()
        waiters = [asyncio.ensure_future(self.event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.event.clear()

    async def close(self) -> None:
        """Stop listening."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._terminated)
            await conn.close()

    def _notified(self, *_: Any) -> None:
        self.event.set()

    def _terminated(self, *_: Any) -> None:
        log.warning("the LISTEN connection closed; polling until it is back")
        self._conn = None


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    """Sleep ``seconds``, or less when ``stop`` gets set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
