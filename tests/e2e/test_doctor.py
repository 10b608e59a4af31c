"""``memsaga doctor`` and the roles' refusal of an unsafe PostgreSQL, as processes, on real servers.

A healthy stack passes (exit 0); a PostgreSQL with fsync off (a throwaway server: fsync is
server-wide) or a database with synchronous_commit off (per database, on the shared server) is
a problem with its fix (exit 1), and the roles refuse it (exit 3) unless
``MEMSAGA_ALLOW_UNSAFE_POSTGRES`` says it is a benchmark; NATS down is unreachable (exit 4).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import pytest_asyncio

from memsaga.devstack import start_nats, start_postgres, stop_service, with_database
from memsaga.devstack.databases import DatabaseFactory
from memsaga.stackstate import StackState, save_stack_state
from projections.stream import ensure_stream
from tests.projections.roles import ENTRY, REPO, Role, dead_address
from tests.support import migrated_database

pytestmark = pytest.mark.services


def doctor(environ: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``memsaga doctor --json`` as a process: its exit code and report."""
    env = {**os.environ, **environ}
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, "doctor", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def unsafe_postgres() -> AsyncIterator[str]:
    """Admin URL of a throwaway server running with fsync off (``ALTER SYSTEM``, reloaded)."""
    state_dir = Path(tempfile.mkdtemp(prefix="memsaga-test-unsafe-"))
    service = await start_postgres(state_dir)
    admin = with_database(service.url, "postgres")
    try:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute("ALTER SYSTEM SET fsync = off")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        yield admin
    finally:
        stop_service(service)
        shutil.rmtree(state_dir, ignore_errors=True)


async def test_a_healthy_stack_passes(
    fresh_database: DatabaseFactory, temporal_address: str, tmp_path: Path
) -> None:
    dsn = await migrated_database(fresh_database)
    state_dir = tmp_path / "state"
    own = await start_nats(tmp_path / "nats")  # its monitoring endpoint is found through the stack
    try:
        save_stack_state(state_dir, StackState(services={"nats": own}))
        nc = await nats.connect(own.url)
        await ensure_stream(nc.jetstream(), "DOCTOR_OK", subject_prefix="doctorok")
        await nc.close()
        code, report = doctor(
            {
                "MEMSAGA_DATABASE_URL": dsn,
                "MEMSAGA_NATS_URL": own.url,
                "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
                "MEMSAGA_NATS_STREAM": "DOCTOR_OK",
                "MEMSAGA_SUBJECT_PREFIX": "doctorok",
                "MEMSAGA_STATE_DIR": str(state_dir),
            }
        )
    finally:
        stop_service(own)
    checks = by_name(report)
    assert code == 0, report
    assert report["format"] == "memsaga.doctor/v1" and report["ok"] is True
    # pgvector is the one thing a healthy server may lack (MEMSAGA_TEST_DATABASE_URL may name one).
    assert {c["status"] for c in report["checks"] if c["name"] != "search.pgvector"} == {"ok"}, report
    for name in ("postgres", "postgres.fsync", "postgres.synchronous_commit", "postgres.full_page_writes"):
        assert checks[name]["status"] == "ok"
    assert "sync_interval: always" in checks["jetstream.sync"]["detail"]
    assert "file storage" in checks["jetstream.stream"]["detail"]
    assert "1 replica" in checks["jetstream.stream"]["detail"]
    assert {"relay.lag", "relay.gap", "projection.memories", "projection.extractions", "temporal"} <= set(
        checks
    )


async def test_fsync_off_is_a_problem_with_its_fix(
    unsafe_postgres: str, nats_url: str, temporal_address: str, tmp_path: Path
) -> None:
    factory = DatabaseFactory(unsafe_postgres)
    dsn = await migrated_database(factory)
    try:
        code, report = doctor(
            {
                "MEMSAGA_DATABASE_URL": dsn,
                "MEMSAGA_NATS_URL": nats_url,
                "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
                "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
            }
        )
    finally:
        await factory.drop_all()
    fsync = by_name(report)["postgres.fsync"]
    assert code == 1, report
    assert report["ok"] is False
    assert fsync["status"] == "problem"
    assert "corrupt" in fsync["detail"]
    assert "ALTER SYSTEM SET fsync = on" in fsync["hint"]
    assert by_name(report)["postgres.synchronous_commit"]["status"] == "ok"


async def test_synchronous_commit_off_for_a_database_names_that_database(
    fresh_database: DatabaseFactory, nats_url: str, temporal_address: str, tmp_path: Path
) -> None:
    dsn = await migrated_database(fresh_database)
    name = dsn.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")  # this database only
    await conn.close()
    code, report = doctor(
        {
            "MEMSAGA_DATABASE_URL": dsn,
            "MEMSAGA_NATS_URL": nats_url,
            "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
            "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        }
    )
    check = by_name(report)["postgres.synchronous_commit"]
    assert code == 1, report
    assert check["status"] == "problem"
    assert check["hint"] == f"ALTER DATABASE {name} RESET synchronous_commit"


async def test_nats_down_is_unreachable(
    fresh_database: DatabaseFactory, temporal_address: str, tmp_path: Path
) -> None:
    dsn = await migrated_database(fresh_database)
    code, report = doctor(
        {
            "MEMSAGA_DATABASE_URL": dsn,
            "MEMSAGA_NATS_URL": f"nats://{dead_address()}",
            "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
            "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        }
    )
    checks = by_name(report)
    assert code == 4, report
    assert checks["nats"]["status"] == "unreachable"
    assert "memsaga dev up" in checks["nats"]["hint"]
    assert "jetstream.stream" not in checks  # not checked without NATS
    assert checks["postgres"]["status"] == "ok"  # the rest still ran
    assert checks["projection.memories"]["status"] == "ok"


@pytest.mark.parametrize("args", [("relay",), ("project", "memories"), ("worker",)])
async def test_a_role_refuses_fsync_off(
    unsafe_postgres: str, nats_url: str, temporal_address: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    environ = {
        "MEMSAGA_DATABASE_URL": with_database(unsafe_postgres, "postgres"),
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_TEMPORAL_ADDRESS": temporal_address,
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
    }
    role = Role(tmp_path, environ, *args)
    try:
        code = await _exit_code(role)
    finally:
        role.kill()
    text = role.output()
    assert code == 3, text
    assert "refuses to start: PostgreSQL runs with fsync=off" in text
    assert "ALTER SYSTEM SET fsync = on" in text and "MEMSAGA_ALLOW_UNSAFE_POSTGRES=1" in text
    assert "Traceback" not in text


async def test_a_role_starts_on_fsync_off_when_told_it_is_a_benchmark(
    unsafe_postgres: str, nats_url: str, tmp_path: Path
) -> None:
    factory = DatabaseFactory(unsafe_postgres)
    dsn = await migrated_database(factory)
    environ = {
        "MEMSAGA_DATABASE_URL": dsn,
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_NATS_STREAM": "DOCTOR_BENCH",
        "MEMSAGA_SUBJECT_PREFIX": "doctorbench",
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        "MEMSAGA_ALLOW_UNSAFE_POSTGRES": "1",
    }
    relay = Role(tmp_path, environ, "relay")
    try:
        await relay.said("relay to DOCTOR_BENCH from position 0")
        assert "fsync=off, allowed by MEMSAGA_ALLOW_UNSAFE_POSTGRES" in relay.output()
        relay.assert_clean_exit(await relay.terminate())
    finally:
        relay.kill()
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream("DOCTOR_BENCH")
        await nc.close()
        await factory.drop_all()


async def _exit_code(role: Role, timeout: float = 60.0) -> int:
    """The role's exit code (it must exit on its own)."""
    return await asyncio.to_thread(role.proc.wait, timeout)
