"""What every command shares: the consoles, ``--json``, error output, running, logging and stopping.

Command modules import this one and never each other (``tests/unit/test_layers.py`` holds it).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ParamSpec, TypeVar

import asyncpg
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from adapters.errors import AdapterNotConfigured, EndpointUnavailable, UnknownAdapter
from eventstore import BlobNotFound, EventStoreError, InvalidQuery, MigrationError
from eventstore.errors import DataErased, UserWasForgotten, WrongMasterKey
from eventstore.keys import InvalidMasterKey
from memsaga.devstack.errors import BinaryNotFound, ServiceUnreachable, StackConflict
from memsaga.errors import (
    DatabaseUnreachable,
    InvalidSettings,
    MasterKeyMissing,
    MemsagaError,
    NotFound,
    ServiceNotConfigured,
    TemporalUnreachable,
)
from memsaga.json_logs import JsonLogFormatter, current_role
from memsaga.query_embedders import ServingEmbedderUnavailable
from memsaga.retraction import InvalidRetraction
from memsaga.search import InvalidSearch
from memsaga.settings import Settings
from memsaga.telemetry import shutdown_tracing
from projections import ProjectionsError
from projections.errors import (
    ExtensionMissing,
    NatsUnavailable,
    ParkedEventNotFound,
    ProjectionCodeMismatch,
    ProjectionNotInitialized,
    UnknownProjection,
)
from projections.row_security import ReaderRoleUnavailable
from sagas.memory_extraction.domain import InvalidExtractionRequest
from sagas.memory_extraction.ports import AdapterError

T = TypeVar("T")
P = ParamSpec("P")

console = Console()
errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for tools instead of a table.")]


class ExitCode(enum.IntEnum):
    """What a command's exit status means (the same for every command; ``memsaga --help`` lists it)."""

    OK = 0
    ERROR = 1
    """The command could not do what was asked (a saga failed, a refusal, a timeout)."""
    USAGE = 2
    """Bad arguments or input; nothing was done."""
    CONFIG = 3
    """A setting is missing or invalid, or the schema or a read model is not set up."""
    UNAVAILABLE = 4
    """A service (PostgreSQL, NATS, Temporal, an adapter's endpoint) cannot be reached."""
    NOT_FOUND = 5
    """What the command names does not exist."""


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the command could not do what was asked; 2 bad arguments or input;"
    " 3 configuration (a setting, the schema, a read model); 4 a service cannot be reached;"
    " 5 not found. With --json an error is one JSON object on stdout: error, message, hint."
)

HINTS: dict[ExitCode, str | None] = {
    ExitCode.ERROR: None,
    ExitCode.USAGE: "see `memsaga COMMAND --help`",
    ExitCode.CONFIG: (
        "see Configuration in README.md (MEMSAGA_* variables); `memsaga migrate` applies the schema"
    ),
    ExitCode.UNAVAILABLE: (
        "start the local stack with `memsaga dev up`, or point MEMSAGA_DATABASE_URL, MEMSAGA_NATS_URL"
        " and MEMSAGA_TEMPORAL_ADDRESS at running services"
    ),
    ExitCode.NOT_FOUND: (
        "check the id: `memsaga memories --user USER` and `memsaga extractions` list what exists"
    ),
}
"""The ``hint`` of a JSON error, by kind (the message itself says the specific fix)."""

# First match wins: the most specific classes first.
_KINDS: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    (
        (
            InvalidSettings,
            ServiceNotConfigured,
            UnknownAdapter,
            AdapterNotConfigured,
            ProjectionNotInitialized,
            ProjectionCodeMismatch,
            ExtensionMissing,
            MigrationError,
            BinaryNotFound,
            StackConflict,
            asyncpg.UndefinedTableError,
            MasterKeyMissing,
            InvalidMasterKey,
            WrongMasterKey,
            ReaderRoleUnavailable,
            ServingEmbedderUnavailable,
        ),
        ExitCode.CONFIG,
    ),
    (
        (
            DatabaseUnreachable,
            TemporalUnreachable,
            NatsUnavailable,
            ServiceUnreachable,
            EndpointUnavailable,
            OSError,
        ),
        ExitCode.UNAVAILABLE,
    ),
    (
        (NotFound, DataErased, ParkedEventNotFound, UnknownProjection, BlobNotFound, LookupError),
        ExitCode.NOT_FOUND,
    ),
    (
        (
            UserWasForgotten,
            InvalidSearch,
            InvalidExtractionRequest,
            InvalidRetraction,
            InvalidQuery,
            ValueError,
        ),
        ExitCode.USAGE,
    ),
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The kind of an error we name (inside exception groups, the first named one's)."""
    exc = _innermost(exc)
    return next((code for classes, code in _KINDS if isinstance(exc, classes)), ExitCode.ERROR)


def json_mode() -> bool:
    """Whether the command line asks for JSON (``--json``): then errors are JSON too."""
    return "--json" in sys.argv[1:]


def fail(
    message: str, *, error: str = "error", code: ExitCode = ExitCode.ERROR, hint: str | None = None
) -> typer.Exit:
    """Print an error the user can act on and return the exit (status ``code``) to raise.

    The message is plain text (``memsaga[bench]`` stays as written) and is not re-wrapped,
    so that DSNs and commands in it stay whole. With ``--json`` it is one JSON object on
    stdout instead: ``{"error": <kind, e.g. the exception's class>, "message": <text>,
    "hint": <what to look at, or null>, "exit_code": <code>}``.
    """
    hint = hint if hint is not None else HINTS[code]
    if json_mode():
        typer.echo(json.dumps({"error": error, "message": message, "hint": hint, "exit_code": int(code)}))
    else:
        errors.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code=int(code))


def fail_with(exc: BaseException, message: str | None = None) -> typer.Exit:
    """:func:`fail` for an error we name: its message (or ``message``), class and kind."""
    inner = _innermost(exc)
    return fail(
        message or known_error(exc) or str(inner), error=type(inner).__name__, code=exit_code_for(exc)
    )


def _innermost(exc: BaseException) -> BaseException:
    if isinstance(exc, BaseExceptionGroup):
        return next((_innermost(e) for e in exc.exceptions if known_error(e) is not None), exc)
    return exc


def known_error(exc: BaseException) -> str | None:
    """What to tell the user about an error we name (inside exception groups too); None for a bug."""
    if isinstance(exc, BaseExceptionGroup):
        return next((m for e in exc.exceptions if (m := known_error(e)) is not None), None)
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"{exc}: apply the schema first with `memsaga migrate`"
    if isinstance(exc, MemsagaError | ProjectionsError | AdapterError | EventStoreError | ValueError):
        return str(exc)
    return None


def run_command(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` for a command; our errors become a message and exit code 1."""
    try:
        return asyncio.run(main())
    except Exception as exc:
        if known_error(exc) is None:
            raise
        raise fail_with(exc) from None


def exits_at_once(command: Callable[P, None]) -> Callable[P, None]:
    """Run ``command``, then leave the process without interpreter teardown.

    temporalio's Rust threads can abort a short-lived client process while Python finalizes
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300); all output is
    flushed and nothing is left to clean up, so skipping the teardown is safe.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
            code = 0
        except typer.Exit as exit_:
            code = exit_.exit_code
        shutdown_tracing()  # os._exit skips atexit: flush spans first
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run


def keep_whole(table: Table, *headers: str, width: int | None = None) -> Table:
    """Keep the columns ``headers`` of ``table`` (its rows added) whole: ids a user must copy.

    When they fit in ``width`` (default: the terminal's) with a little room for the others, they
    are never wrapped or cut and the other columns wrap; on a narrower terminal they fold over
    lines rather than lose characters (``--json`` has every id whole).
    """
    ids = [c for c in table.columns if c.header in headers]
    widest = {id(c): max((cell_len(str(cell)) for cell in c.cells), default=0) for c in ids}
    others = len(table.columns) - len(ids)
    needed = sum(widest.values()) + 3 * len(table.columns) + 1 + 8 * others
    fits = needed <= (width if width is not None else console.width)
    for column in table.columns:
        if column in ids:
            column.no_wrap, column.overflow = fits, "fold"
            column.min_width = max(widest[id(column)], cell_len(str(column.header))) if fits else None
        elif fits and column.ratio is None:
            column.ratio = 1  # the others share what the ids leave
    return table


def log_to_stderr() -> None:
    """INFO logs on stderr, for the long-running commands: styled on a terminal; elsewhere (a
    file, Docker, journald) one plain line per record, never wrapped; with
    ``MEMSAGA_LOG_FORMAT=json`` one JSON object per record (:mod:`memsaga.json_logs`)."""
    handler: logging.Handler
    if Settings().log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter(current_role()))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        return
    if errors.is_terminal:
        handler = RichHandler(console=errors, show_path=False)
        layout = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        layout = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=layout, handlers=[handler])


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
