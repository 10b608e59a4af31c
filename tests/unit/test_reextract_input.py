"""``memsaga reextract`` refuses bad input before it connects to anything: a message and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.reextraction import reextraction_request
from memsaga.settings import Settings


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


def test_http_adapters_get_the_http_limits(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        llm_base_url="http://127.0.0.1:9/v1",
        reextract_http_concurrency=3,
        reextract_http_rate=0.5,
    )

    http = reextraction_request(settings, user_id="u-1", extractor="http", embedder="hashing")
    offline = reextraction_request(
        settings, user_id=None, extractor="rules", embedder="hashing", request_id="k-1"
    )

    assert (http.max_concurrency, http.max_per_second) == (3, 0.5)
    assert (offline.max_concurrency, offline.max_per_second, offline.request_id) == (4, None, "k-1")
