"""Wake-ups on appends: LISTEN on a dedicated connection, with polling as the fallback.

A pooled connection drops its listener on release, so the listener owns a plain
connection. NOTIFY is only a hint: notifications sent while it is disconnected are lost,
so the waiter always times out after ``poll_interval`` and polls anyway.

Appends notify only while a relay's doorbell is armed (``memsaga.relay_doorbells``, see
``projections/migrations/0002_relay_doorbell.sql``): a relay arms it when it has caught up and
is about to wait, and disarms it when it finds a full batch (it is behind and polls again at
once). An append already running when the doorbell is armed may not notify, so for a short
while after arming the waiter polls quickly instead of trusting the bell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "memsaga_events"  # raised by the trigger of projections/migrations/0002_relay_doorbell.sql
SETTLE_SECONDS = 0.5  # after arming, appends that began before it may commit without notifying ...
SETTLE_POLL = 0.02  # ... so poll this often meanwhile

# What a lost or refused LISTEN connection raises (InternalClientError: a query on a connection
# the server has just closed).
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

_ARM = """INSERT INTO memsaga.relay_doorbells (stream, armed) VALUES ($1, $2)
    ON CONFLICT (stream) DO UPDATE SET armed = EXCLUDED.armed, changed_at = now()"""


class Outage:
    """Reports a run of failures once: a warning at the first, one line when things work again.

    The retries in between are logged at DEBUG only, so an outage of an hour is two lines.
    """

    def __init__(self, role: str, logger: logging.Logger | None = None) -> None:
        self.role = role
        self.log = logger or log
        self._since: float | None = None
        self._what = ""

    @property
    def ongoing(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """An attempt failed (``what``: the service and its address, e.g. "NATS at nats://…")."""
        if self._since is None:
            self._since, self._what = time.monotonic(), what
            self.log.warning(
                "%s: waiting for %s (%s); retrying with backoff", self.role, what, _describe(exc)
            )
        else:
            self.log.debug("%s: still waiting for %s (%s)", self.role, what, _describe(exc))

    def recovered(self) -> None:
        """An attempt succeeded: logs the end of an outage, if there was one."""
        if self._since is not None:
            seconds = time.monotonic() - self._since
            self.log.info("%s: %s works again after %.1fs", self.role, self._what, seconds)
            self._since = None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AppendWakeup:
    """Sets an event when ``memsaga.events`` gets rows; reconnects when its connection drops."""

    def __init__(self, dsn: str | None, *, doorbell: str | None = None, reconnect_every: float = 5.0) -> None:
        self.dsn = dsn
        self.doorbell = doorbell
        self.reconnect_every = reconnect_every
        self.event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._last_attempt = float("-inf")
        self._armed: bool | None = None  # None: not known (not connected, or just reconnected)
        self._armed_at = float("-inf")
        self._outage = Outage(f"relay {doorbell or ''}".strip())

    async def arm(self) -> bool:
        """Ask appends to notify (once caught up, before waiting); whether it was not armed before.

        A caller that just armed should poll once more before it waits: an append that
        committed before the bell was armed did not ring it.
        """
        return await self._ring(True)

    async def disarm(self) -> None:
        """Appends need not notify (while the caller is busy catching up)."""
        await self._ring(False)

    async def _ring(self, armed: bool) -> bool:
        await self.ensure_listening()
        conn = self._conn
        if self.doorbell is None or conn is None or self._armed is armed:
            return False
        try:
            await conn.execute(_ARM, self.doorbell, armed)
        except _CONNECTION_ERRORS as exc:
            log.debug("cannot %s the doorbell (%s); polling", "arm" if armed else "disarm", exc)
            self._armed = None
            return False
        self._armed = armed
        if armed:
            self._armed_at = time.monotonic()
        return True

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
        except _CONNECTION_ERRORS as exc:
            self._outage.failed(f"LISTEN at {address_of(self.dsn)} (polling meanwhile)", exc)
            return
        self._outage.recovered()
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._armed = None  # a new connection may follow a server restart that emptied the doorbells
        self.event.set()  # anything appended while we were not listening: poll once now

    async def wait(self, timeout: float, stop: asyncio.Event, *also: asyncio.Future[Any]) -> None:
        """Until a notification, ``stop``, one of ``also`` is done, or ``timeout`` seconds,
        whichever comes first (``also`` is left as it is)."""
        await self.ensure_listening()
        if time.monotonic() - self._armed_at < SETTLE_SECONDS:
            timeout = min(timeout, SETTLE_POLL)
        waiters = [asyncio.ensure_future(self.event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait([*waiters, *also], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.event.clear()

    async def close(self) -> None:
        """Disarm the doorbell and stop listening."""
        if self._armed:
            await self.disarm()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._terminated)
            await conn.close()

    def _notified(self, *_: Any) -> None:
        self.event.set()

    def _terminated(self, *_: Any) -> None:
        log.warning("the LISTEN connection to %s closed; polling until it is back", address_of(self.dsn))
        self._conn = None
        self._armed = None


def address_of(dsn: str | None) -> str:
    """Where a DSN points (``host:port/database``), without user or password, for logs."""
    if not dsn:
        return "PostgreSQL"
    parts = urlsplit(dsn)
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {parts.hostname or ''}{port}{parts.path}"


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    """Sleep ``seconds``, or less when ``stop`` gets set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
