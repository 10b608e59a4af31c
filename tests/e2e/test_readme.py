"""The README's Python snippet runs as shown against a running stack (worker, relay, search projection)."""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The first Python block of "Using memsaga"."""
    section = README.read_text(encoding="utf-8").split("## Using memsaga", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "README's Using memsaga has no Python snippet"
    return found.group(1)


async def test_the_readme_python_snippet_runs_as_shown(
    search_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = search_stack.settings
    for variable, value in {
        "MEMSAGA_DATABASE_URL": s.require_database_url(),
        "MEMSAGA_TEMPORAL_ADDRESS": s.require_temporal_address(),
        "MEMSAGA_NATS_URL": s.require_nats_url(),
        "MEMSAGA_TASK_QUEUE": s.task_queue,
        "MEMSAGA_NATS_STREAM": s.nats_stream,
        "MEMSAGA_SUBJECT_PREFIX": s.subject_prefix,
        "MEMSAGA_STATE_DIR": str(s.state_dir),
    }.items():
        monkeypatch.setenv(variable, value)  # the snippet's Settings() reads them, as a user's would
    # The one change: a fresh workflow id, since the Temporal server may outlive this test run.
    source = readme_snippet().replace('"chat-42"', f'"chat-{uuid.uuid4().hex[:8]}"')
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        pending = eval(code, {"__name__": "readme"})  # top-level await: a coroutine to await
        if inspect.iscoroutine(pending):
            await pending

    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("http") and "/workflows/" in lines[0]  # the run in the Temporal UI
    assert "User loves hiking" in lines[-1]  # recall found what the saga just wrote
