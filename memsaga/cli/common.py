"""What every command shares: the consoles, ``--json``, error output, running, logging and stopping.

Command modules import this one and never each other (``tests/unit/test_layers.py`` holds it).
"""

from __future__ import annotations

import asyncio
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
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from memsaga.errors import MemsagaError
from memsaga.telemetry import shutdown_tracing
from projections import ProjectionsError
from sagas.memory_extraction.ports import AdapterError

T = TypeVar("T")
P = ParamSpec("P")

console = Console()
errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for tools instead of a table.")]


def json_mode() -> bool:
    """Whether the command line asks for JSON (``--json``): then errors are JSON too."""
    return "--json" in sys.argv[1:]


def fail(message: str, *, error: str = "error") -> typer.Exit:
    """Print an error the user can act on and return the exit to raise.

    The message is plain text (``memsaga[bench]`` stays as written) and is not re-wrapped,
    so that DSNs and commands in it stay whole. With ``--json`` it is one JSON object on
    stdout instead: ``{"error": <kind, e.g. the exception's class>, "message": <text>}``.
    """
    if json_mode():
        typer.echo(json.dumps({"error": error, "message": message}))
    else:
        errors.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code=1)


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
    if isinstance(exc, MemsagaError | ProjectionsError | AdapterError | ValueError):
        return str(exc)
    return None


def run_command(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` for a command; our errors become a message and exit code 1."""
    try:
        return asyncio.run(main())
    except Exception as exc:
        if (message := known_error(exc)) is None:
            raise
        raise fail(message, error=type(_innermost(exc)).__name__) from None


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


def log_to_stderr() -> None:
    """INFO logs on stderr, for the long-running commands."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=False)],
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
