"""The local stack's state file (``<state_dir>/stack.json``): which services run where."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

STATE_FILE = "stack.json"
MASTER_KEY_FILE = "master.key"
"""The local stack's master key (docs/privacy.md), made by ``memsaga dev up`` when missing."""


class NodeState(BaseModel):
    """One server of a NATS cluster the local stack runs (``memsaga dev up --nats-cluster N``)."""

    name: str  # its server_name, e.g. memsaga-nats-1: how JetStream names stream leaders and replicas
    url: str  # its client URL
    cluster_port: int  # where the other nodes route to it
    pid: int | None = None
    data_dir: str | None = None  # its configuration, JetStream store and ports file
    log_file: str | None = None


class ServiceState(BaseModel):
    """One service of the local stack."""

    name: str
    url: str
    managed: bool  # True: started by `memsaga dev up` (and stopped by `down`); False: reused
    pid: int | None = None
    ui_url: str | None = None  # Temporal only
    codec_url: str | None = None  # Temporal only: where its UI asks `memsaga codec-server` to decode
    data_dir: str | None = None
    log_file: str | None = None
    nodes: list[
        NodeState
    ] = []  # NATS as a cluster: its servers (then ``url`` lists their URLs, comma-separated)
    replicas: int | None = None  # NATS as a cluster: the events stream's replicas


class StackState(BaseModel):
    """All services of the local stack, by name (postgres, nats, temporal)."""

    services: dict[str, ServiceState] = {}


def load_stack_state(state_dir: Path) -> StackState:
    """Read the state file; an absent file is an empty stack."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return StackState()
    return StackState.model_validate(json.loads(path.read_text()))


def save_stack_state(state_dir: Path, state: StackState) -> None:
    """Write the state file atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(state_dir / STATE_FILE)


def ensure_master_key_file(state_dir: Path, make: Callable[[], str]) -> Path:
    """``<state_dir>/master.key``, written with ``make()`` (readable by its owner only) if missing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / MASTER_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(make() + "\n")
    return path
