"""The commands end to end: relay and runners as real processes, the others through the typer app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from memsaga.cli import app
from projections import EXTRACTIONS, MEMORIES
from projections.stream import stream_config
from tests.projections.conftest import Env, applied, built, relay_position, wait_until
from tests.projections.histories import append_all, make_history

REPO = Path(__file__).resolve().parents[2]


def settings_env(env: Env, nats_url: str, state_dir: Path) -> dict[str, str]:
    return {
        "MEMSAGA_DATABASE_URL": env.dsn,
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_NATS_STREAM": env.stream,
        "MEMSAGA_SUBJECT_PREFIX": env.prefix,
        "MEMSAGA_STATE_DIR": str(state_dir),
        "MEMSAGA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
    }


async def cli(environ: dict[str, str], *args: str, code: int = 0) -> Any:
    """Run one command in a thread (it calls asyncio.run itself); its parsed JSON, or its text."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environ)
    text = result.stdout + result.stderr
    assert result.exit_code == code, f"memsaga {' '.join(args)} -> {result.exit_code}:\n{text}"
    return json.loads(result.stdout) if "--json" in args and code == 0 else text


def spawn(environ: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from memsaga.cli import main; main()", *args],
        cwd=REPO,
        env={**os.environ, **environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_relay_project_and_queries_from_the_command_line(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    environ = settings_env(env, nats_url, tmp_path)
    history = make_history(seed=61, sagas=4)
    relay = spawn(environ, "relay")
    runners = spawn(environ, "project", "memories", "extractions")
    try:
        for name in ("memories", "extractions"):
            await wait_until(partial(built, env.pool, name), what=f"{name} built by `memsaga project`")
        await append_all(env.store, history)
        head = await env.store.head_position()
        await wait_until(lambda: _relayed(env, head), what="`memsaga relay` at head")
        await wait_until(lambda: _applied(env, history.count(MEMORIES.event_types), head), what="projected")

        user, expected = sorted(history.memories().items())[0]
        mine = await cli(environ, "memories", "--user", user, "--json")
        assert {(m["memory_id"], m["text"]) for m in mine} == expected
        assert mine[0]["memory_id"] in await cli(environ, "memories", "--user", user)
        sagas = await cli(environ, "extractions", "--json")
        assert {s["correlation_id"]: s["status"] for s in sagas} == history.statuses
        one = await cli(environ, "extractions", "--correlation-id", "corr-61-0", "--json")
        assert one["timeline"][0]["event_type"] == "ExtractionRequested"
        assert "ExtractionRequested" in await cli(environ, "extractions", "--correlation-id", "corr-61-0")
        await cli(environ, "extractions", "--correlation-id", "nope", code=5)  # not found

        statuses = {s["name"]: s for s in await cli(environ, "projections", "--json")}
        assert statuses["memories"]["applied"] == history.count(MEMORIES.event_types)
        assert statuses["extractions"]["lag"] == {"events": 0, "seconds": 0.0}
        assert statuses["extractions"]["consumer"]["pending"] == 0 and statuses["memories"]["parked"] == 0
        assert "memories" in await cli(environ, "projections")
        stats = await cli(environ, "stats", "--json")
        assert stats["stream"]["messages"] == head and stats["stream"]["limits"] == []
        assert (stats["relay"]["position"], stats["relay"]["lag"]["events"]) == (head, 0)
        assert "relay lag" in await cli(environ, "stats")

        rebuilt = await cli(environ, "project", "rebuild", "memories", "--json")
        assert (rebuilt["version"], rebuilt["previous_version"]) == (2, 1)
        assert await cli(environ, "memories", "--user", user, "--json") == mine
        assert await cli(environ, "dlq", "list", "--json") == []
        await cli(environ, "project", "rebuild", "nope", code=5)
    finally:
        for proc in (relay, runners):
            proc.send_signal(signal.SIGTERM)
    for proc in (relay, runners):
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]


async def test_the_relay_command_refuses_a_stream_with_limits(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    limited = stream_config(env.stream, env.prefix, 60)
    limited.max_msgs = 5
    await env.js.add_stream(limited)
    output = await cli(settings_env(env, nats_url, tmp_path), "relay", code=1)
    assert "max_msgs=5" in output and "--accept-stream-limits" in output


async def _relayed(env: Env, head: int) -> bool:
    return await relay_position(env.pool, env.stream) >= head


async def _applied(env: Env, memories: int, extractions: int) -> bool:
    return (
        await applied(env.pool, MEMORIES.name) == memories
        and await applied(env.pool, EXTRACTIONS.name) == extractions
    )
