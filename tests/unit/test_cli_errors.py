"""The CLI's error boundary: a message the user can act on and an exit code per kind, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.cli.common import fail


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
