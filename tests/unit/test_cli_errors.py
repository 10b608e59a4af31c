"""The CLI's error boundary: a message the user can act on and an exit code per kind, never a traceback."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.cli.common import fail, keep_whole


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args", [["migrate"], ["migrations"], ["trace", "corr-1"], ["stats"], ["memories", "--user", "u"]]
)
def test_an_unreachable_database_is_a_message(args: list[str], tmp_path: Path) -> None:
    dsn = f"postgresql://memsaga@127.0.0.1:{closed_port()}/memsaga"
    env = {"MEMSAGA_DATABASE_URL": dsn, "MEMSAGA_STATE_DIR": str(tmp_path)}

    result = CliRunner().invoke(app, args, env=env)

    assert isinstance(result.exception, SystemExit), result.exception  # typer.Exit, not a crash
    assert result.exit_code == 4  # a service cannot be reached
    assert f"cannot connect to PostgreSQL at {dsn}" in result.output and "memsaga dev up" in result.output


def test_an_error_message_is_printed_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = fail("install it: pip install 'memsaga[bench]'")

    assert exit_.exit_code == 1
    assert "error: install it: pip install 'memsaga[bench]'" in capsys.readouterr().err


def test_a_table_keeps_ids_whole_however_long_the_other_columns() -> None:
    table = Table("memory", "text", "correlation id")
    memory_id, correlation_id = (
        "3f2a9c1e-8b7d-5e4f-a1c2-9d8e7f6a5b4c",
        "extract-chat-2026-12-03-0001-of-user-ana",
    )
    table.add_row(memory_id, "User moved from Lisbon to Berlin in May 2024 " * 3, correlation_id)
    wide, narrow = Console(width=100, record=True), Console(width=50, record=True)
    wide.print(keep_whole(table, "memory", "correlation id", width=100))
    narrow.print(keep_whole(table, "memory", "correlation id", width=50))

    shown = wide.export_text()
    assert memory_id in shown and correlation_id in shown  # each whole, on one line: the text wrapped
    assert max(map(len, shown.splitlines())) <= 100
    first_column = [line.split("│")[1].strip() for line in narrow.export_text().splitlines() if "│" in line]
    assert "".join(first_column) == memory_id  # too narrow: folded over lines, nothing lost


def test_logs_in_a_file_are_one_line_per_record() -> None:
    message = "relay: waiting for NATS at nats://127.0.0.1:4222 " + "x" * 200
    code = (
        "import logging; from memsaga.cli.common import log_to_stderr; log_to_stderr();"
        f" logging.getLogger('projections.relay').warning({message!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    [line] = done.stderr.splitlines()
    assert line.endswith(message) and " WARNING projections.relay: " in line


def test_an_error_no_command_names_is_one_line_and_a_traceback_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_app = importlib.import_module("memsaga.cli.app")  # the module: ``memsaga.cli.app`` is the Typer

    def broken() -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr(cli_app, "app", broken)
    monkeypatch.delenv("MEMSAGA_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    assert exited.value.code == 1
    said = capsys.readouterr()
    assert "Traceback" not in said.err + said.out
    assert "unexpected KeyError: 'no such thing'" in said.err and "MEMSAGA_DEBUG=1" in said.err

    monkeypatch.setenv("MEMSAGA_DEBUG", "1")
    with pytest.raises(KeyError):
        cli_app.main()
