"""The NATS cluster's pieces that need no server: URL lists, replicas, the doctor's cluster check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.js.api import StreamInfo
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.doctor.jetstream import cluster_check
from memsaga.errors import InvalidSettings
from memsaga.settings import Settings
from memsaga.stackstate import NodeState, ServiceState, StackState, save_stack_state
from projections.stream import server_urls, stream_config


def test_comma_separated_urls_are_the_servers_of_one_cluster() -> None:
    assert server_urls("nats://a:1, nats://b:2,,nats://c:3 ") == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert server_urls(["nats://a:1,nats://b:2", "nats://c:3"]) == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert server_urls("nats://a:1") == ["nats://a:1"]


def test_the_stream_config_carries_its_replicas() -> None:
    assert stream_config("S", "events", 120).num_replicas == 1
    assert stream_config("S", "events", 120, replicas=3).num_replicas == 3


def test_replicas_come_from_the_setting_else_the_local_cluster(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path, nats_url=None, nats_replicas=None).stream_replicas() == 1
    node = NodeState(name="memsaga-nats-1", url="nats://127.0.0.1:1", cluster_port=2)
    cluster = ServiceState(name="nats", url=node.url, managed=True, nodes=[node], replicas=3)
    save_stack_state(tmp_path, StackState(services={"nats": cluster}))
    assert Settings(state_dir=tmp_path, nats_url=None, nats_replicas=None).stream_replicas() == 3
    assert (
        Settings(state_dir=tmp_path, nats_url="nats://other:4222", nats_replicas=None).stream_replicas() == 1
    )
    assert Settings(state_dir=tmp_path, nats_url=None, nats_replicas=2).stream_replicas() == 2


@pytest.mark.parametrize("value", ["0", "6", "three"])
def test_replicas_outside_one_to_five_are_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSAGA_NATS_REPLICAS", value)
    with pytest.raises((InvalidSettings, ValueError)):
        Settings()


def _info(leader: str | None, replicas: list[dict[str, Any]], num_replicas: int = 3) -> StreamInfo:
    return StreamInfo.from_response(
        {
            "config": {"name": "EVENTS", "subjects": ["events.>"], "num_replicas": num_replicas},
            "state": {"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0, "consumer_count": 0},
            "cluster": {"name": "memsaga", "leader": leader, "replicas": replicas},
        }
    )


def test_the_cluster_check_names_the_leader_and_each_replica() -> None:
    current = [{"name": "n2", "current": True, "active": 1}, {"name": "n3", "current": True, "active": 1}]
    check = cluster_check(_info("n1", current), 3)
    assert check.status == "ok"
    assert "leader n1, n2 current, n3 current" in check.detail


def test_a_replica_behind_is_a_warning_and_no_leader_a_problem() -> None:
    behind = [{"name": "n2", "current": True}, {"name": "n3", "current": False, "active": 18_000_000_000}]
    check = cluster_check(_info("n1", behind), 3)
    assert check.status == "warn" and "n3 not current, last seen 18s ago" in check.detail
    assert check.hint is not None and "n3" in check.hint
    assert cluster_check(_info(None, []), 3).status == "problem"
    assert cluster_check(_info("n1", [], num_replicas=1), 3).status == "warn"  # fewer than asked


@pytest.mark.parametrize("size", ["2", "6"])
def test_dev_up_refuses_a_cluster_size_jetstream_cannot_use(size: str) -> None:
    result = CliRunner().invoke(app, ["dev", "up", "--nats-cluster", size])
    assert result.exit_code == 2  # bad arguments, nothing started
    assert "--nats-cluster" in result.output
