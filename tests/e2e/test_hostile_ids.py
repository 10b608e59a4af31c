"""Hostile identifiers end to end, through the CLI and the Python client on the real stack:
printable ones are kept verbatim and match only themselves; the others are refused (exit 2)
before anything is recorded; none reaches a NATS subject."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.client import InvalidSearch, Recall, extraction_result, start_extraction
from projections import EXTRACTIONS, MEMORIES, MEMORY_SEARCH, rebuild
from projections.consistency import has_applied
from sagas.memory_extraction.domain import InvalidExtractionRequest
from tests.e2e.conftest import Stack
from tests.workflows.support import eventually, request

KEPT = ("'; DROP TABLE events;--", "a.b.>", "*", "../x")
REFUSED = ("", " ", "u\x00", "x" * 10_240, "u-1\n", " u-1")


def environ(stack: Stack, tmp_path: Path) -> dict[str, str]:
    s = stack.settings
    assert s.database_url and s.temporal_address
    return {
        "MEMSAGA_DATABASE_URL": s.database_url,
        "MEMSAGA_TEMPORAL_ADDRESS": s.temporal_address,
        "MEMSAGA_TASK_QUEUE": s.task_queue,
        "MEMSAGA_STATE_DIR": str(tmp_path),
    }


async def cli(stack: Stack, tmp_path: Path, *args: str, code: int = 0) -> Any:
    """``memsaga ARGS``: in this process, but saga commands (they leave with ``os._exit``) in their own."""
    if args[0] == "extract":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "memsaga", *args, env={**os.environ, **environ(stack, tmp_path)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        exit_code, stdout, text = proc.returncode, out.decode(), (out + err).decode()
    else:
        result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environ(stack, tmp_path))
        exit_code, stdout, text = result.exit_code, result.stdout, result.stdout + result.stderr
    assert exit_code == code, f"memsaga {' '.join(args)[:200]} -> {exit_code}:\n{text[:2000]}"
    assert "Traceback" not in text
    return json.loads(stdout) if "--json" in args and code == 0 else text


async def events(stack: Stack) -> int:
    return int(await stack.pool.fetchval("SELECT count(*) FROM memsaga.events"))


async def test_printable_hostile_ids_are_kept_verbatim_and_match_only_themselves(
    search_stack: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    last = 0
    for user in KEPT:  # the user, the idempotency key and the correlation id are all hostile
        extraction = request(user_id=user).model_copy(update={"correlation_id": f"{user} {tag}"})
        handle = await start_extraction(
            search_stack.client, extraction, workflow_id=f"{user}-{tag}", settings=search_stack.settings
        )
        assert (handle.user_id, handle.workflow_id) == (user, f"extract-{user}-{tag}")
        result = await extraction_result(search_stack.client, handle.workflow_id)
        assert result.outcome == "completed" and result.memory_ids
        last = max(last, result.last_position)

    async def applied() -> bool | None:
        return await has_applied(search_stack.pool, search_stack.store, MEMORY_SEARCH, last) or None

    await eventually(applied, 30, "the search read model")
    assert await search_stack.pool.fetchval("SELECT to_regclass('memsaga.events') IS NOT NULL")
    await rebuild(search_stack.pool, search_stack.store, MEMORIES)
    await rebuild(search_stack.pool, search_stack.store, EXTRACTIONS)
    for user in KEPT:
        found = await cli(
            search_stack, tmp_path, "search", "--user", user, "hiking", "--mode", "keyword", "--json"
        )
        assert found["hits"] and {h["user_id"] for h in found["hits"]} == {user}
        memories = await cli(search_stack, tmp_path, "memories", "--user", user, "--json")
        assert len(memories) == 3 and {m["user_id"] for m in memories} == {user}
        sagas = await cli(search_stack, tmp_path, "extractions", "--user", user, "--json")
        assert [s["correlation_id"] for s in sagas] == [f"{user} {tag}"]
    await cli(search_stack, tmp_path, "extractions", "--user", "*", "--correlation-id", "c", code=2)
    for pattern in ("%", "_", "a", "a.b", ".", "'"):  # no pattern or prefix matches anyone
        assert await cli(search_stack, tmp_path, "memories", "--user", pattern, "--json") == []
    async with Recall.open(search_stack.settings) as recall:
        found_by_client = await recall.search("hiking", user_id="*", k=20)
    assert found_by_client.hits and {h.user_id for h in found_by_client.hits} == {"*"}

    subjects = await subjects_published(search_stack)
    prefix = re.escape(search_stack.settings.subject_prefix)
    assert subjects and all(
        re.fullmatch(rf"{prefix}\.(episode|memory)\.[A-Za-z]+\.[0-9]+", s) for s in subjects
    ), subjects


async def subjects_published(stack: Stack) -> list[str]:
    assert stack.settings.nats_url
    nc = await nats.connect(stack.settings.nats_url)
    try:
        info = await nc.jetstream().stream_info(stack.settings.nats_stream, subjects_filter=">")
    finally:
        await nc.close()
    return sorted((info.state.subjects or {}).keys())


@pytest.mark.parametrize("user", REFUSED, ids=["empty", "space", "nul", "10kb", "newline", "leading-space"])
async def test_unusable_ids_are_refused_with_exit_2_and_nothing_recorded(
    search_stack: Stack, tmp_path: Path, user: str
) -> None:
    before = await events(search_stack)
    if "\x00" not in user:  # no command line can hold a NUL (the OS refuses it): in-process only
        said = await cli(search_stack, tmp_path, "extract", "--user", user, "--text", "I love tea.", code=2)
        assert "ids are 1 to 200 characters" in said and len(said) < 2000
    for command in (["memories", "--user", user], ["search", "--user", user, "tea"]):
        await cli(search_stack, tmp_path, *command, code=2)
    with pytest.raises(InvalidExtractionRequest, match="user_id"):
        await start_extraction(
            search_stack.client,
            request().model_copy(update={"user_id": user}),
            settings=search_stack.settings,
        )
    with pytest.raises(InvalidExtractionRequest, match="workflow_id"):
        await start_extraction(
            search_stack.client, request(), workflow_id=f"k{user}\x00", settings=search_stack.settings
        )
    async with Recall.open(search_stack.settings) as recall:
        with pytest.raises(InvalidSearch):
            await recall.search("tea", user_id=user)
    assert await events(search_stack) == before


async def test_ids_that_are_not_utf8_are_refused_from_the_command_line(
    search_stack: Stack, tmp_path: Path
) -> None:
    before = await events(search_stack)
    bad = b"caf\xe9"  # Latin-1, not UTF-8
    for tail in (
        [b"extract", b"--user", bad, b"--text", b"I love tea."],
        [b"memories", b"--user", bad],
        [b"search", b"--user", bad, b"tea"],
        [b"extractions", b"--user", bad],
        [b"status", b"extract-" + bad],
        [b"approve", b"extract-" + bad],
    ):
        argv = [sys.executable.encode(), b"-m", b"memsaga", *tail, b"--json"]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **environ(search_stack, tmp_path)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 2 and b"Traceback" not in err, (tail, out, err)
        shown = json.loads(out)
        assert shown["exit_code"] == 2 and "not valid UTF-8" in shown["message"]
    assert await events(search_stack) == before
