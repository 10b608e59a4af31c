"""Projections that version themselves (issue 18): a runner with newer code builds its version
beside the live one from the store, switches once caught up and keeps reads answering; older
code never writes to a newer version; a build killed midway resumes from its checkpoint."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

import memsaga.cli.projections as cli_projections
from memsaga.cli import app
from projections import ProjectionCodeMismatch, ProjectionRunner, RebuildProgress, rebuild
from projections.rebuild import ensure_built
from projections.versions import checkpoint
from tests.projections.conftest import Env, applied, background, built, consumer_drained, snapshot, wait_until
from tests.projections.counter import COUNTER, COUNTER_V2, V2_DELAY_ENV
from tests.projections.histories import append_all, make_history
from tests.projections.test_cli import REPO, settings_env

UPGRADE = r"older code than the read model .*: upgrade it"
OLD_CODE_MAIN = (  # the CLI with the counter's old code as its only projection
    "import memsaga.cli.projections as p; from tests.projections.counter import COUNTER;"
    " p.PROJECTIONS = {'counter': COUNTER}; from memsaga.cli import main; main()"
)


async def _states(env: Env) -> dict[int, str]:
    rows = await env.pool.fetch(
        "SELECT version, state FROM memsaga.projection_versions WHERE name = 'counter'"
    )
    return {r["version"]: r["state"] for r in rows}


async def _counter(env: Env) -> tuple[int, int, int]:
    """(n, rows seen, distinct event ids seen), read through the views, as readers do."""
    views = COUNTER.views()
    n = await env.pool.fetchval(f"SELECT n FROM {views['counter']}")
    row = await env.pool.fetchrow(f"SELECT count(*), count(DISTINCT event_id) FROM {views['counter_seen']}")
    assert row is not None
    return int(n), int(row[0]), int(row[1])


async def _live_applied(env: Env, want: int) -> bool:
    return await applied(env.pool, COUNTER.name) == want


async def _build_applied(env: Env, at_least: int) -> bool:
    if 2 not in await _states(env):
        return False
    return (await checkpoint(env.pool, "counter", 2)).applied >= at_least


async def _active_is(env: Env, version: int) -> bool:
    active = await env.pool.fetchval("SELECT active_version FROM memsaga.projections WHERE name = 'counter'")
    return bool(active == version)


async def _cli(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run one command in a thread (it calls asyncio.run itself): exit code, stdout, stderr."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environ)
    return result.exit_code, result.stdout, result.stderr


async def test_a_version_bump_builds_beside_the_live_version_and_switches_once_caught_up(
    env: Env, nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, during, after = (make_history(seed=81, sagas=12), make_history(seed=82, sagas=3),
                             make_history(seed=83, sagas=2))  # fmt: skip
    total = len(before.events) + len(during.events) + len(after.events)
    monkeypatch.setenv(V2_DELAY_ENV, "0.03")  # 30 ms per event: the build takes a few seconds
    monkeypatch.setattr(cli_projections, "PROJECTIONS", {"counter": COUNTER_V2})  # `memsaga projections`
    environ = settings_env(env, nats_url, tmp_path)
    progress: list[RebuildProgress] = []

    async with background() as bg:
        bg.start(env.relay().run)
        old = asyncio.ensure_future(env.runner(COUNTER, retry_delay=0.1).run(bg.stop))  # the old code
        try:
            await wait_until(partial(built, env.pool, "counter"), what="v1 built", bg=bg)
            await append_all(env.store, before)
            await wait_until(partial(_live_applied, env, len(before.events)), what="v1 caught up", bg=bg)

            new = ProjectionRunner(  # the new code, deployed beside it
                COUNTER_V2,
                env.store,
                env.js,
                env.runner_config(build_batch_size=10),
                build_progress=progress.append,
            )
            bg.start(new.run)
            await wait_until(
                lambda: _states_are(env, {1: "active", 2: "building"}), what="v2 building", bg=bg
            )

            # During the build: the old runner keeps v1 current and readers read it.
            await append_all(env.store, during)
            live = len(before.events) + len(during.events)
            await wait_until(partial(_live_applied, env, live), what="v1 applying during the build", bg=bg)
            await wait_until(lambda: _build_applied(env, 10), what="v2 a batch in", bg=bg)
            assert await _states(env) == {1: "active", 2: "building"}, "the build ended too soon to test"
            assert await _counter(env) == (live, live, live)
            code, out, err = await _cli(environ, "projections", "--json")
            assert code == 0, err
            [status] = json.loads(out)
            assert status["active_version"] == 1
            assert [(v["version"], v["code_version"], v["state"]) for v in status["versions"]] == [
                (1, 1, "active"),
                (2, 2, "building"),
            ]
            active, building = status["versions"]
            assert (active["applied"], active["head"], active["progress"]) == (live, None, None)
            assert 0 < building["position"] < live and 0 < building["progress"] < 1
            assert building["applied"] >= 10 and building["head"] >= building["position"]

            await wait_until(partial(_active_is, env, 2), what="the switch to v2", bg=bg)
            # The old code stops applying (here idle: it notices within a fetch timeout) and says why.
            with pytest.raises(ProjectionCodeMismatch, match=UPGRADE):
                await asyncio.wait_for(old, timeout=10)
            await append_all(env.store, after)
            await wait_until(partial(_live_applied, env, total), what="v2 applying after the switch", bg=bg)
            await wait_until(partial(consumer_drained, env.js, env.stream, COUNTER), bg=bg)
        finally:
            old.cancel()

    assert await _states(env) == {1: "retired", 2: "active"}
    assert await _counter(env) == (total, total, total)  # every event exactly once, across the handover
    frozen, now = await checkpoint(env.pool, "counter", 1), await checkpoint(env.pool, "counter", 2)
    assert frozen.applied == frozen.position == live  # v1 stopped at the switch...
    assert now.applied == total  # ...and v2 had everything v1 had when it took over
    positions = [p.position for p in progress]
    assert positions == sorted(positions) and progress[-1].version == 2
    types = await env.pool.fetchval(
        f"SELECT count(DISTINCT event_type) FROM {COUNTER_V2.views()['counter_seen']}"
    )
    assert types > 1  # the new code's column, filled

    # Row for row what a fresh build with the new code makes.
    switched = await snapshot(env.pool, COUNTER_V2)
    monkeypatch.delenv(V2_DELAY_ENV)  # at full speed now
    fresh = await rebuild(env.pool, env.store, COUNTER_V2)
    assert fresh.version == 3 and await snapshot(env.pool, COUNTER_V2, 3) == switched


async def _states_are(env: Env, want: dict[int, str]) -> bool:
    return await _states(env) == want


async def test_a_build_killed_midway_resumes_from_its_checkpoint_and_old_code_is_refused(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    await ensure_built(env.pool, env.store, COUNTER)  # v1, by the old code
    history = make_history(seed=84, sagas=8)
    await append_all(env.store, history)
    total = len(history.events)

    child = subprocess.Popen(  # `project run` with the new code, killed during its build
        [
            sys.executable,
            "-m",
            "tests.projections.counter_runner",
            env.dsn,
            nats_url,
            env.stream,
            env.prefix,
            "2",
        ],
        cwd=REPO,
        env={**os.environ, V2_DELAY_ENV: "0.02"},  # 5 events × 20 ms per transaction
    )
    try:

        async def a_few_batches_in() -> bool:
            assert child.poll() is None, "the runner process died"
            return (
                await _states(env) == {1: "active", 2: "building"}
                and (await checkpoint(env.pool, "counter", 2)).applied >= 15
            )

        await wait_until(a_few_batches_in, what="the build a few batches in")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)

    assert await _states(env) == {1: "active", 2: "building"}
    killed = await checkpoint(env.pool, "counter", 2)
    assert 15 <= killed.applied < total and killed.applied % 5 == 0  # whole transactions only

    progress: list[RebuildProgress] = []
    runner = ProjectionRunner(
        COUNTER_V2, env.store, env.js, env.runner_config(build_batch_size=5), build_progress=progress.append
    )
    sub = await runner.start()  # the next `project run`
    await sub.unsubscribe()
    assert await _states(env) == {1: "retired", 2: "active"}  # the same v2 finished, no v3 from 0
    assert progress[0].position == killed.position < progress[-1].position  # on from the checkpoint...
    assert progress[-1].applied == total - killed.applied  # ...and applied only what was left
    assert await _counter(env) == (total, total, total)

    # A downgrade: the old code is refused, by the runner, by a rebuild and by the command.
    with pytest.raises(ProjectionCodeMismatch, match=UPGRADE):
        await env.runner(COUNTER).start()
    with pytest.raises(ProjectionCodeMismatch, match="upgrade it"):
        await rebuild(env.pool, env.store, COUNTER)
    command = subprocess.run(  # `memsaga project run counter` with the old code, as a process
        [sys.executable, "-c", OLD_CODE_MAIN, "project", "run", "counter"],
        cwd=REPO,
        env={**os.environ, **settings_env(env, nats_url, tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert command.returncode == 3, command.stderr
    err = command.stderr
    assert "version 2, this process has version 1" in err and "upgrade it" in err and "Traceback" not in err
    assert await _states(env) == {1: "retired", 2: "active"}


async def test_a_stop_during_the_build_abandons_it_at_once_for_the_next_run(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_built(env.pool, env.store, COUNTER)
    await append_all(env.store, make_history(seed=85, sagas=4))
    monkeypatch.setenv(V2_DELAY_ENV, "0.05")
    runner = ProjectionRunner(COUNTER_V2, env.store, env.js, env.runner_config(build_batch_size=5))
    stop = asyncio.Event()
    running = asyncio.ensure_future(runner.run(stop))
    await wait_until(lambda: _build_applied(env, 5), what="v2 a batch in")
    stop.set()  # SIGTERM
    stats = await asyncio.wait_for(running, timeout=2)  # not after the whole build
    assert stats.batches == 0 and await _states(env) == {1: "active", 2: "building"}
    left = await checkpoint(env.pool, "counter", 2)
    assert left.applied % 5 == 0 and left.applied >= 5  # whole transactions: the next run resumes here
