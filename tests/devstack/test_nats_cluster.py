"""`up --nats-cluster 3` / `status` / `down` on real nats-servers (PostgreSQL and Temporal reused).

One stack is shared by the module; the tests run in file order and the last one stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.devstack import down, status, up
from memsaga.devstack.errors import DevstackError, NatsClusterMismatch
from memsaga.devstack.process import pid_alive, wait_for_exit
from memsaga.settings import Settings
from memsaga.stackstate import StackState, load_stack_state
from projections import connect_nats, ensure_stream

pytestmark = pytest.mark.services


def cluster_settings(state_dir: Path, postgres_url: str, temporal_address: str, **more: Any) -> Settings:
    """Settings naming PostgreSQL and Temporal (reused), and no NATS: `up` runs the cluster."""
    fields: dict[str, Any] = {"nats_url": None, "nats_replicas": None, "temporal_ui_url": None}
    return Settings(
        state_dir=state_dir,
        database_url=postgres_url,
        temporal_address=temporal_address,
        **(fields | more),
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, temporal_address: str) -> Settings:
    return cluster_settings(tmp_path_factory.mktemp("cluster") / ".memsaga", postgres_url, temporal_address)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(settings: Settings) -> AsyncIterator[StackState]:
    state = await up(settings, prefer_default_ports=False, nats_cluster=3)
    try:
        yield state
    finally:
        await down(settings)


async def test_up_starts_three_nodes_as_one_cluster(stack: StackState, settings: Settings) -> None:
    nats = stack.services["nats"]
    assert nats.managed and nats.replicas == 3
    assert [n.name for n in nats.nodes] == ["memsaga-nats-1", "memsaga-nats-2", "memsaga-nats-3"]
    assert nats.url == ",".join(n.url for n in nats.nodes)
    dirs = {n.data_dir for n in nats.nodes}
    assert len(dirs) == 3 and all(d and d.startswith(str(settings.state_dir.resolve())) for d in dirs)
    assert len({n.cluster_port for n in nats.nodes}) == 3
    assert all(pid_alive(n.pid) for n in nats.nodes)
    assert load_stack_state(settings.state_dir) == stack


async def test_the_events_stream_has_three_replicas(stack: StackState, settings: Settings) -> None:
    nc = await connect_nats(stack.services["nats"].url, name="test-cluster")
    try:
        info = await nc.jetstream().stream_info(settings.nats_stream)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader in {
            n.name for n in stack.services["nats"].nodes
        }
        # ensure_stream scales a stream up to the replicas asked for, never down
        js = nc.jetstream()
        assert (await ensure_stream(js, "SCALED", subject_prefix="scaled")).config.num_replicas == 1
        assert (
            await ensure_stream(js, "SCALED", subject_prefix="scaled", replicas=3)
        ).config.num_replicas == 3
        assert (
            await ensure_stream(js, "SCALED", subject_prefix="scaled", replicas=1)
        ).config.num_replicas == 3
        await js.delete_stream("SCALED")
    finally:
        await nc.close()


async def test_settings_find_every_node_and_the_replicas(stack: StackState, settings: Settings) -> None:
    assert settings.require_nats_url() == stack.services["nats"].url
    assert settings.stream_replicas() == 3
    assert settings.model_copy(update={"nats_replicas": 1}).stream_replicas() == 1
    assert settings.model_copy(update={"nats_url": "nats://elsewhere:4222"}).stream_replicas() == 1


async def test_status_shows_each_node(stack: StackState, settings: Settings) -> None:
    [nats] = [s for s in await status(settings) if s.name == "nats"]
    assert nats.up and nats.nodes is not None
    assert [(n.name, n.up, n.url) for n in nats.nodes] == [
        (n.name, True, n.url) for n in stack.services["nats"].nodes
    ]
    env = {"MEMSAGA_STATE_DIR": str(settings.state_dir), "MEMSAGA_NATS_URL": ""}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["dev", "status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    [shown] = [s for s in json.loads(result.stdout) if s["name"] == "nats"]
    assert [n["name"] for n in shown["nodes"]] == [n.name for n in nats.nodes]
    assert {"name", "up", "url", "ui_url", "managed", "pid"} <= set(shown)  # the documented keys stay
    table = await asyncio.to_thread(CliRunner().invoke, app, ["dev", "status"], env=env)
    assert "cluster: 3 of 3 nodes up" in table.stdout and "memsaga-nats-2" in table.stdout


async def test_up_again_starts_a_killed_node_on_its_port(stack: StackState, settings: Settings) -> None:
    before = load_stack_state(settings.state_dir).services["nats"]
    victim = before.nodes[1]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_for_exit(victim.pid, 5)
    after = (await up(settings, prefer_default_ports=False)).services["nats"]  # no flag: the recorded cluster
    assert [n.url for n in after.nodes] == [n.url for n in before.nodes]
    assert after.nodes[1].pid != victim.pid and pid_alive(after.nodes[1].pid)
    assert [after.nodes[i].pid for i in (0, 2)] == [before.nodes[i].pid for i in (0, 2)]


async def test_a_cluster_of_another_size_or_a_named_nats_is_refused(
    stack: StackState, settings: Settings
) -> None:
    before = load_stack_state(settings.state_dir)
    with pytest.raises(NatsClusterMismatch, match="cluster of 3"):
        await up(settings, prefer_default_ports=False, nats_cluster=5)
    named = settings.model_copy(update={"nats_url": stack.services["nats"].nodes[0].url})
    with pytest.raises(DevstackError, match="unset MEMSAGA_NATS_URL"):
        await up(named, prefer_default_ports=False, nats_cluster=3)
    assert load_stack_state(settings.state_dir) == before  # nothing forgotten, nothing started


async def test_down_stops_every_node(stack: StackState, settings: Settings) -> None:
    nodes = load_stack_state(settings.state_dir).services["nats"].nodes
    stopped = await down(settings)
    assert "nats" in {s.name for s in stopped}
    assert not any(pid_alive(n.pid) for n in nodes)
    assert "nats" not in load_stack_state(settings.state_dir).services
