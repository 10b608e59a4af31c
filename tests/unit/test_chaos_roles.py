"""A chaos run's roles in several processes: their names, and which one a fault hits."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from memsaga.chaos.faults import FAILPOINTS, Injector, Supervisor
from memsaga.chaos.ledger import Ledger
from memsaga.chaos.stack import (
    DEFAULT_REPLICAS,
    PARTITIONS,
    ROLES,
    ChaosStack,
    RoleProcess,
    instance_name,
    role_of,
)


def _stack(tmp_path: Path, replicas: dict[str, int]) -> ChaosStack:
    stack = ChaosStack(tmp_path)
    for role, argv in ROLES.items():
        for n in range(1, replicas[role] + 1):
            name = instance_name(role, n)
            stack.roles[name] = RoleProcess(name, argv, {}, tmp_path / f"{name}.log")  # never started
    return stack


def test_instance_names_carry_their_role() -> None:
    assert instance_name("worker", 2) == "worker-2"
    assert role_of("worker-2") == "worker"
    assert role_of(instance_name("projector", 11)) == "projector"


def test_the_default_runs_two_workers_and_two_projectors(tmp_path: Path) -> None:
    assert DEFAULT_REPLICAS == {"worker": 2, "relay": 1, "projector": 2}
    stack = _stack(tmp_path, DEFAULT_REPLICAS)
    assert stack.instances("worker") == ["worker-1", "worker-2"]
    assert stack.instances("relay") == ["relay-1"]
    assert stack.roles["projector-2"].argv == ("project", "--partitions", str(PARTITIONS))  # leases to share


def test_faults_hit_every_process_of_a_role_over_a_run(tmp_path: Path) -> None:
    stack = _stack(tmp_path, {"worker": 2, "relay": 1, "projector": 3})
    ledger = Ledger()
    injector = Injector(stack, ledger, Supervisor(stack, ledger), random.Random(15))
    picked = {injector._one_of("projector") for _ in range(50)}
    assert picked == {"projector-1", "projector-2", "projector-3"}
    assert {injector._one_of("relay") for _ in range(5)} == {"relay-1"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_failpoint_names_the_process_it_was_armed_in(tmp_path: Path, seed: int) -> None:
    stack = _stack(tmp_path, {"worker": 2, "relay": 2, "projector": 2})
    ledger = Ledger()
    supervisor = Supervisor(stack, ledger)
    starts: list[tuple[str, str | None]] = []
    for process in stack.roles.values():
        process.start = lambda failpoints=None, name=process.name: starts.append((name, failpoints))  # type: ignore[method-assign]
    record = Injector(stack, ledger, supervisor, random.Random(seed))._failpoint("failpoint")
    assert record.target in stack.roles
    assert supervisor.armed.keys() == {record.target}
    [(name, spec)] = starts
    assert name == record.target and spec is not None
    assert spec.split("=", 1)[0] in FAILPOINTS[role_of(record.target)]
