"""The saga with real worker processes: ``kill -9`` between two steps, graceful SIGTERM, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from memsaga.client import approve_extraction, extraction_result
from memsaga.settings import Settings
from tests.workflows.support import SENSITIVE_EPISODE, SagaEnv, normalised, request

ENTRY = "from memsaga.cli import main; main()"


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a memsaga process pointed at this module's services and task queue."""
    return {
        **os.environ,
        "MEMSAGA_DATABASE_URL": settings.require_database_url(),
        "MEMSAGA_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MEMSAGA_TASK_QUEUE": settings.task_queue,
        "MEMSAGA_STATE_DIR": str(settings.state_dir),
        "MEMSAGA_TEMPORAL_UI_URL": "http://ui.test:8233",
    }


@asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    """``memsaga worker`` as a child process, yielded once it polls; killed if still running at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ENTRY,
        "worker",
        env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"memsaga worker ready" in line, line
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def memsaga(settings: Settings, *args: str) -> Any:
    """Run ``memsaga ARGS --json`` and return its decoded output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ENTRY,
        *args,
        "--json",
        env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def memsaga_error(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``memsaga ARGS --json`` that must fail: its exit code and its one JSON error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, *args, "--json", env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode and "Traceback" not in err.decode(), err.decode()
    [line] = out.decode().splitlines()  # one error, said once
    return proc.returncode, json.loads(line)


@pytest.fixture(scope="module")
def process_settings(saga_settings: Settings) -> Settings:
    """This module's task queue is served by worker processes only (not the in-process worker)."""
    return saga_settings.model_copy(update={"task_queue": f"{saga_settings.task_queue}-proc"})


async def test_kill_9_between_two_steps_finishes_with_the_events_of_an_undisturbed_run(
    saga_env: SagaEnv, process_settings: Settings
) -> None:
    env = SagaEnv(saga_env.client, saga_env.pool, saga_env.store, saga_env.blobs, process_settings)
    async with worker_process(process_settings) as first:
        disturbed = await env.start(request(SENSITIVE_EPISODE))
        await env.wait_status(disturbed.workflow_id, lambda s: s.waiting_for_review)
        first.send_signal(signal.SIGKILL)  # between dedup and store: the saga waits for its review
        await first.wait()
    async with worker_process(process_settings) as second:
        await approve_extraction(env.client, disturbed.workflow_id, reviewer="ana")
        disturbed_result = await asyncio.wait_for(extraction_result(env.client, disturbed.workflow_id), 60)

        undisturbed = await env.start(request(SENSITIVE_EPISODE))
        await env.wait_status(undisturbed.workflow_id, lambda s: s.waiting_for_review)
        await approve_extraction(env.client, undisturbed.workflow_id, reviewer="ana")
        await extraction_result(env.client, undisturbed.workflow_id)

        second.send_signal(signal.SIGTERM)  # graceful stop
        assert await asyncio.wait_for(second.wait(), 30) == 0

    assert disturbed_result.outcome == "completed" and len(disturbed_result.memory_ids) == 2
    after_crash = await env.events(disturbed)
    keys = [e.metadata["saga_event"] for e in after_crash]
    assert len(keys) == len(set(keys)) == 11  # none twice
    assert normalised(after_crash, disturbed.workflow_id) == normalised(
        await env.events(undisturbed), undisturbed.workflow_id
    )


async def test_cli_starts_queries_and_steers_sagas(
    saga_env: SagaEnv, process_settings: Settings, tmp_path: Path
) -> None:
    key = f"cli-{uuid.uuid4().hex[:8]}"
    episode = tmp_path / "episode.txt"
    episode.write_text("User: I live in Porto.\nAssistant: Lovely city!", encoding="utf-8")
    user = f"user-{uuid.uuid4().hex[:6]}"
    async with worker_process(process_settings):
        started = await memsaga(
            process_settings,
            "extract",
            "--user",
            user,
            "--text",
            "I love hiking.",
            "--id",
            key,
            "--review",
            "--correlation-id",
            f"c-{key}",
        )
        again = await memsaga(
            process_settings, "extract", "--user", user, "--text", "I love hiking.", "--id", key
        )
        status = await memsaga(process_settings, "status", started["workflow_id"])
        typo = await memsaga_error(process_settings, "approve", started["workflow_id"], "--only", "nope")
        await memsaga(process_settings, "approve", started["workflow_id"], "--reviewer", "ana")
        result = await extraction_result(saga_env.client, started["workflow_id"])

        waited = await memsaga(process_settings, "extract", "--user", user, "--file", str(episode), "--wait")
        rejected = await memsaga(
            process_settings, "extract", "--user", user, "--text", "I love tea.", "--review"
        )
        await memsaga(process_settings, "reject", rejected["workflow_id"], "--reason", "wrong user")
        rejected_result = await extraction_result(saga_env.client, rejected["workflow_id"])

    assert started["workflow_id"] == f"extract-{key}" and started["correlation_id"] == f"c-{key}"
    assert (again["run_id"], again["correlation_id"]) == (started["run_id"], f"c-{key}")
    ui = f"http://ui.test:8233/namespaces/default/workflows/extract-{key}/{started['run_id']}"
    assert started["url"] == ui
    assert status["waiting_for_review"] is True and status["step"] == "review"
    assert typo[0] == 5 and "not a candidate under review: nope" in typo[1]["message"]
    assert result.outcome == "completed" and len(result.memory_ids) == 1
    assert waited["result"]["outcome"] == "completed" and len(waited["result"]["memory_ids"]) == 1
    assert rejected_result.outcome == "rejected" and "wrong user" in (rejected_result.reason or "")


async def test_extract_wait_prints_the_ids_first_and_says_how_to_answer_a_review(
    saga_env: SagaEnv, process_settings: Settings
) -> None:
    key = f"wait-{uuid.uuid4().hex[:8]}"
    async with worker_process(process_settings):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ENTRY,
            *(
                "extract",
                "--user",
                f"user-{key}",
                "--text",
                "I'm allergic to peanuts.",
                "--id",
                key,
                "--wait",
            ),
            env=cli_env(process_settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 60)  # before the saga ends
        said = ""
        while "waiting for a review" not in said:  # the candidates first, then how to answer
            said += (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        await approve_extraction(saga_env.client, f"extract-{key}", reviewer="ana")
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)

    assert first.decode().split() == ["workflow_id", f"extract-{key}"]
    assert "candidates under review (1)" in said and "User is allergic to peanuts" in said
    assert "health" in said
    assert f"memsaga approve extract-{key}" in said and "--only" in said
    assert proc.returncode == 0 and "completed" in rest.decode() and "last_position" in rest.decode()
