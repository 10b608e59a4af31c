"""``memsaga reextract`` refuses bad input before it connects to anything: a message and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsaga.cli import app


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["reextract"], "exactly one of --user USER or --all"),
        (["reextract", "--user", "u-1", "--all"], "exactly one of --user USER or --all"),
        (["reextract", "--all", "--extractor", "gpt-9"], "gpt-9"),
        (["reextract", "--all", "--embedder", "nonsense"], "nonsense"),
        (["reextract", "--user", "bad\x00id"], "--user"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], says: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, args, env={"MEMSAGA_STATE_DIR": str(tmp_path)})

    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert result.exit_code == 2
    assert "error: " in result.output and says in result.output
