"""``memsaga project run --partitions N`` and what ``memsaga projections --json`` says of partitions."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.projections.conftest import Env, wait_until
from tests.projections.histories import append_all, make_history
from tests.projections.test_cli import cli, settings_env, spawn


async def test_project_run_with_partitions_and_the_status_of_each_partition(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    environ = settings_env(env, nats_url, tmp_path)
    history = make_history(seed=95, sagas=6, users=8)
    relay = spawn(environ, "relay")
    runners = [spawn(environ, "project", "memories", "--partitions", "2") for _ in range(2)]
    created = history.count(("MemoryCreated",))
    try:
        await append_all(env.store, history)

        async def split_and_done() -> bool:
            [status] = [s for s in await cli(environ, "projections", "--json") if s["name"] == "memories"]
            held = [p["runner_id"] for p in status["partition_detail"] if p["runner_id"]]
            return (
                status["partitions"] == 2
                and len(set(held)) == 2
                and status["lag"]["events"] == 0
                and status["applied"] >= created
            )

        await wait_until(split_and_done, timeout=60, what="two `project` processes, one partition each")
        [status] = [s for s in await cli(environ, "projections", "--json") if s["name"] == "memories"]
        assert status["versions"][0]["partitions"] == 2 and status["consumer"]["pending"] == 0
        assert [p["partition"] for p in status["partition_detail"]] == [0, 1]
        assert all(p["lease_seconds_left"] > 0 and p["pid"] for p in status["partition_detail"])
        assert "memories" in await cli(environ, "projections")  # the table (wrapped to the test's width)
        await cli(environ, "project", "run", "--partitions", "65", code=2)
    finally:
        for proc in (relay, *runners):
            proc.send_signal(signal.SIGTERM)
    for proc in (relay, *runners):
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
