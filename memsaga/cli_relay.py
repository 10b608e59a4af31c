"""``memsaga relay`` and ``memsaga stats``: publish the event store to JetStream, and watch it.

Also home of what the projection commands share: logging for long-running commands,
stop-on-signal, and opening PostgreSQL and NATS from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Annotated, Any, TypeVar

import asyncpg
import nats.errors
import typer
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_stores, create_pool
from memsaga.cli_store import JsonFlag, fail
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from projections import ProjectionsError, Relay, RelayConfig, connect_nats
from projections.status import RelayStatus, StreamStatus, relay_status, stream_status
from projections.stream import describe_limits

T = TypeVar("T")
console = Console()


@dataclass
class Services:
    """What the relay and projection commands work with."""

    settings: Settings
    pool: asyncpg.Pool
    store: PostgresEventStore
    nc: NATS | None

    @property
    def js(self) -> JetStreamContext:
        """JetStream of the NATS connection (only when one was asked for)."""
        assert self.nc is not None
        return self.nc.jetstream()


@contextlib.asynccontextmanager
async def services(*, with_nats: bool, name: str = "memsaga") -> AsyncIterator[Services]:
    """Open PostgreSQL (and NATS, waiting for it as long as it takes) from settings; close them after.

    :raises MemsagaError: PostgreSQL cannot be reached; says how to fix it.
    """
    settings = Settings()
    dsn = settings.require_database_url()
    try:
        pool = await create_pool(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise MemsagaError(
            f"cannot connect to PostgreSQL at {dsn}: {exc} (is `memsaga dev up` running?)"
        ) from exc
    nc = None
    try:
        if with_nats:
            nc = await connect_nats(settings.require_nats_url(), name=name, connect_timeout=None)
        store, _ = build_stores(pool, settings)
        yield Services(settings, pool, store, nc)
    finally:
        if nc is not None:
            await nc.close()
        await pool.close()


async def optional_nats(settings: Settings, name: str) -> tuple[NATS | None, str | None]:
    """A NATS connection for a status command, or None and why not (status still shows PostgreSQL's view)."""
    try:
        return await connect_nats(settings.require_nats_url(), name=name, connect_timeout=3.0), None
    except (MemsagaError, ProjectionsError, OSError, nats.errors.Error) as exc:
        return None, f"NATS unreachable: {exc}"


def run_command(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` for a command; our errors become a message and exit code 1."""
    try:
        return asyncio.run(main())
    except asyncpg.UndefinedTableError as exc:
        raise fail(f"{exc}: apply the schema first with `memsaga migrate`") from None
    except (MemsagaError, ProjectionsError, ValueError) as exc:
        raise fail(str(exc)) from None


def log_to_stderr() -> None:
    """INFO logs on stderr, for the long-running commands."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


def signal_stop() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call inside the running loop).

    Only the main thread can receive signals; elsewhere (an embedding host) the event is
    never set by one.
    """
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    return stop


def relay_command(
    from_position: Annotated[
        int | None,
        typer.Option("--from-position", min=1, help="Republish from this position (inclusive), then go on."),
    ] = None,
    to_position: Annotated[
        int | None,
        typer.Option("--to-position", min=1, help="Stop after this position (a one-shot republish)."),
    ] = None,
    accept_stream_limits: Annotated[
        bool,
        typer.Option("--accept-stream-limits", help="Run even if the stream has limits that drop history."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish every stored event to JetStream, in order, until SIGTERM or Ctrl-C."""
    log_to_stderr()

    async def main() -> dict[str, object]:
        async with services(with_nats=True, name="memsaga-relay") as svc:
            s = svc.settings
            config = RelayConfig(
                stream=s.nats_stream,
                subject_prefix=s.subject_prefix,
                batch_size=s.relay_batch_size,
                poll_interval=s.relay_poll_interval_seconds,
                duplicate_window=s.stream_duplicate_window_seconds,
                accept_stream_limits=accept_stream_limits,
            )
            relay = Relay(svc.store, svc.js, config, listen_dsn=s.require_database_url())
            stats = await relay.run(signal_stop(), from_position=from_position, to_position=to_position)
            return asdict(stats)

    stats = run_command(main)
    if as_json:
        typer.echo(json.dumps(stats))
    else:
        console.print(
            f"relay stopped at position {stats['position']}: {stats['published']} published "
            f"({stats['duplicates']} duplicates dropped by JetStream)"
        )


def stats_command(as_json: JsonFlag = False) -> None:
    """Show the events stream's size and the relay's lag."""

    async def main() -> tuple[RelayStatus, StreamStatus | None, str | None]:
        async with services(with_nats=False) as svc:
            relay = await relay_status(svc.pool, svc.store, svc.settings.nats_stream)
            nc, problem = await optional_nats(svc.settings, "memsaga-stats")
            if nc is None:
                return relay, None, problem
            try:
                return relay, await stream_status(nc.jetstream(), svc.settings.nats_stream), None
            finally:
                await nc.close()

    relay, stream, problem = run_command(main)
    if as_json:
        payload = {
            "relay": relay.model_dump(mode="json"),
            "stream": None if stream is None else stream.model_dump(mode="json"),
            "error": problem,
        }
        typer.echo(json.dumps(payload))
        return
    table = Table("", "value", show_header=False)
    if stream is not None:
        table.add_row("stream", stream.name)
        table.add_row(
            "messages",
            f"{stream.messages:,} ({stream.bytes:,} bytes), seq {stream.first_seq}..{stream.last_seq}",
        )
        table.add_row("consumers", str(stream.consumers))
        limits = describe_limits(stream.limits)
        table.add_row("limits", f"[bold red]{limits}[/]" if stream.limits else limits)
    else:
        table.add_row(
            "stream", f"[yellow]{problem or f'{relay.stream} does not exist yet (start `memsaga relay`)'}[/]"
        )
    table.add_row("relay position", f"{relay.position:,} of {relay.head:,}")
    table.add_row("relay lag", f"{relay.lag.events:,} events, {relay.lag.seconds:.1f}s")
    table.add_row("relay updated", str(relay.updated_at or "never ran"))
    console.print(table)


def register_relay_commands(app: typer.Typer) -> None:
    """Attach ``relay`` and ``stats`` to the main app."""
    app.command("relay")(relay_command)
    app.command("stats")(stats_command)
