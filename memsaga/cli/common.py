"""What every command shares: the consoles, ``--json``, error output, running, logging and stopping.

Command modules import this one and never each other (``tests/unit/test_layers.py`` holds it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from memsaga.errors import MemsagaError
from projections import ProjectionsError
from sagas.memory_extraction.ports import AdapterError

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for tools instead of a table.")]


def fail(message: str) -> typer.Exit:
    """Print an error the user can act on and return the exit to raise.

    The message is plain text (``memsaga[bench]`` stays as written) and is not re-wrapped,
    so that DSNs and commands in it stay whole.
    """
    errors.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code=1)


def run_command(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` for a command; our errors become a message and exit code 1."""
    try:
        return asyncio.run(main())
    except asyncpg.UndefinedTableError as exc:
        raise fail(f"{exc}: apply the schema first with `memsaga migrate`") from None
    except (MemsagaError, ProjectionsError, AdapterError, ValueError) as exc:
        raise fail(str(exc)) from None


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
