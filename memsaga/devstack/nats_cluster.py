"""A NATS JetStream cluster for the local stack (``memsaga dev up --nats-cluster N``).

N nats-server processes on 127.0.0.1, named ``memsaga-nats-1`` … ``memsaga-nats-N``, each with
its own configuration, JetStream store and ports file under ``<state_dir>/nats-cluster/node-I``,
and every node routing to every other. Client and monitoring ports are picked by nats-server
itself (``-1``, reported in its ports file); the cluster ports must be known before the nodes
start (each names the others' in its routes), so they are found by binding and released: when
another process takes one in between, the node that lost it exits and the whole cluster is
started again on new ports.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from memsaga.devstack.errors import NatsClusterNotFormed, ServiceStartFailed, log_tail
from memsaga.devstack.nats import (
    PACKAGE,
    STARTUP_TIMEOUT,
    client_urls,
    monitoring_url,
    probe_nats,
    write_config,
)
from memsaga.devstack.ports import LOCALHOST, free_ports, port_is_free
from memsaga.devstack.process import find_binary, runs, spawn, terminate
from memsaga.stackstate import NodeState, ServiceState

CLUSTER_NAME = "memsaga"
REPLICAS = 3
"""Replicas of the events stream on a cluster: any one node may be lost, two must be up."""
SIZES = range(3, 6)
"""Cluster sizes ``dev up`` starts: 3 to 5 (JetStream keeps at most 5 replicas)."""
PORT_ATTEMPTS = 3
CLUSTER_DIR = "nats-cluster"
PORT_TAKEN = "address already in use"


class _PortTaken(Exception):
    """A node could not listen on its cluster (or client) port: another process took it."""


@dataclass(frozen=True)
class NodeHealth:
    """One node as ``dev status`` shows it."""

    name: str
    up: bool
    url: str
    pid: int | None


def node_name(index: int) -> str:
    """The server_name of the ``index``-th node (from 1)."""
    return f"memsaga-nats-{index}"


async def start_nats_cluster(
    state_dir: Path, size: int = 3, *, timeout: float = STARTUP_TIMEOUT
) -> ServiceState:
    """Start ``size`` nats-servers as one JetStream cluster and wait until it has a meta leader
    that knows every node.

    :raises ValueError: ``size`` is not in :data:`SIZES`.
    :raises BinaryNotFound: nats-server is not installed.
    :raises ServiceStartFailed: a node exited (for a reason other than a port taken meanwhile).
    :raises NatsClusterNotFormed: the nodes run but did not form a cluster in ``timeout`` seconds.
    """
    if size not in SIZES:
        raise ValueError(f"a NATS cluster has {SIZES.start} to {SIZES.stop - 1} nodes, not {size}")
    root = state_dir.resolve() / CLUSTER_DIR
    logs = state_dir.resolve() / "logs"
    for _ in range(PORT_ATTEMPTS):
        nodes = [
            NodeState(
                name=node_name(i + 1),
                url="",
                cluster_port=port,
                data_dir=str(root / f"node-{i + 1}"),
                log_file=str(logs / f"nats-{i + 1}.log"),
            )
            for i, port in enumerate(free_ports(size))
        ]
        try:
            started = await _start_nodes(nodes, [n.name for n in nodes], nodes, timeout)
        except _PortTaken:
            continue
        return cluster_state(root, started)
    raise ServiceStartFailed("nats cluster", f"its ports were taken by other processes {PORT_ATTEMPTS} times")


async def restart_nodes(
    service: ServiceState, names: Sequence[str] | None = None, *, timeout: float = STARTUP_TIMEOUT
) -> ServiceState:
    """Start again the recorded nodes ``names`` (default: every node that does not run), on
    their client and cluster ports when those are free, and wait until the cluster has them.

    :raises ServiceStartFailed: a node exited.
    :raises NatsClusterNotFormed: the cluster did not take them back in ``timeout`` seconds.
    """
    wanted = set(names) if names is not None else {n.name for n in service.nodes if not node_runs(n)}
    for _ in range(PORT_ATTEMPTS):
        nodes = [_with_free_ports(n) if n.name in wanted else n for n in service.nodes]
        try:
            started = await _start_nodes(nodes, sorted(wanted), service.nodes, timeout)
        except _PortTaken:
            continue
        return cluster_state(Path(service.data_dir or "."), started, service)
    raise ServiceStartFailed("nats cluster", f"its ports were taken by other processes {PORT_ATTEMPTS} times")


def stop_nats_cluster(service: ServiceState, timeout: float = 15.0) -> None:
    """SIGTERM (then SIGKILL) every node that still runs; a pid reused by another process is left alone."""
    for node in service.nodes:
        if node.pid is not None and runs(node.pid, node.data_dir):
            terminate(node.pid, timeout=timeout)


def node_runs(node: NodeState) -> bool:
    """Whether the node's recorded process is alive (and still ours)."""
    return node.pid is not None and runs(node.pid, node.data_dir)


async def cluster_health(service: ServiceState) -> list[NodeHealth]:
    """Each node: whether its process runs and it answers with JetStream."""

    async def one(node: NodeState) -> NodeHealth:
        up = node_runs(node) and await probe_nats(node.url, timeout=2.0) is None
        return NodeHealth(node.name, up, node.url, node.pid if up else None)

    return list(await asyncio.gather(*(one(n) for n in service.nodes)))


def cluster_state(
    root: Path, nodes: Sequence[NodeState], previous: ServiceState | None = None
) -> ServiceState:
    """The stack's record of a cluster: its nodes, their client URLs comma-separated as ``url``."""
    return ServiceState(
        name="nats",
        url=",".join(n.url for n in nodes),
        managed=True,
        data_dir=str(root),
        log_file=previous.log_file if previous is not None else None,
        nodes=list(nodes),
        replicas=previous.replicas if previous is not None and previous.replicas else REPLICAS,
    )


def node_monitoring_url(node: NodeState) -> str | None:
    """The node's monitoring endpoint, from its ports file."""
    if node.data_dir is None or node.pid is None:
        return None
    return monitoring_url(Path(node.data_dir), node.pid)


def _with_free_ports(node: NodeState) -> NodeState:
    """``node`` to start again: its cluster port, or a new one when that is taken (the client port
    is kept in its URL and checked when the node starts)."""
    if port_is_free(node.cluster_port):
        return node
    [port] = free_ports(1)
    return node.model_copy(update={"cluster_port": port})


def _client_port(node: NodeState) -> int:
    """The port a restarted node listens on for clients: its recorded one when free, else ``-1``."""
    try:
        port = int(node.url.rsplit(":", 1)[1]) if node.url else -1
    except (IndexError, ValueError):
        return -1
    return port if port > 0 and port_is_free(port) else -1


async def _start_nodes(
    nodes: Sequence[NodeState], names: Sequence[str], peers: Sequence[NodeState], timeout: float
) -> list[NodeState]:
    """Start the nodes ``names`` of ``nodes``, then wait until every node is in the cluster.

    :raises _PortTaken: a node lost a port to another process (all nodes started here are stopped).
    """
    routes = sorted({n.cluster_port for n in (*nodes, *peers)})
    procs: dict[str, subprocess.Popen[bytes]] = {}
    result = list(nodes)
    try:
        for i, node in enumerate(nodes):
            if node.name in names:
                procs[node.name] = _spawn_node(node, routes)
                result[i] = node.model_copy(update={"pid": procs[node.name].pid})
        result = await _wait_formed(result, procs, timeout)
    except BaseException:
        await asyncio.gather(*(asyncio.to_thread(terminate, p.pid) for p in procs.values()))
        raise
    return result


def _spawn_node(node: NodeState, routes: Sequence[int]) -> subprocess.Popen[bytes]:
    assert node.data_dir is not None and node.log_file is not None
    root = Path(node.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.ports"):
        stale.unlink()
    urls = ", ".join(json.dumps(f"nats-route://{LOCALHOST}:{port}") for port in routes)
    cluster = (
        f"server_name: {node.name}\n"
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {json.dumps(f'{LOCALHOST}:{node.cluster_port}')}\n"
        f"  routes: [{urls}]\n}}\n"
    )
    config = write_config(root, cluster)
    argv: list[str | Path] = [
        find_binary("nats-server", PACKAGE),
        "-a",
        LOCALHOST,
        "-p",
        str(_client_port(node)),
    ]
    argv += ["-c", config, "-m", "-1", "--ports_file_dir", root, "-P", root / "nats-server.pid"]
    return spawn(argv, Path(node.log_file), cwd=root)


async def _wait_formed(
    nodes: list[NodeState], procs: dict[str, subprocess.Popen[bytes]], timeout: float
) -> list[NodeState]:
    """Poll until every node reports its client URL and a healthy JetStream that sees a meta
    leader and the whole cluster; the nodes with their URLs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting: list[str] = []
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    _failed(next(n for n in nodes if n.name == name), proc.returncode)
            nodes = [_with_url(n) for n in nodes]
            waiting = [w for w in await asyncio.gather(*(_not_in(http, n, len(nodes)) for n in nodes)) if w]
            if not waiting:
                return nodes
            if loop.time() > deadline:
                raise NatsClusterNotFormed(timeout, waiting, [Path(n.log_file or "") for n in nodes])
            await asyncio.sleep(0.25)


def _failed(node: NodeState, code: int) -> None:
    log_file = Path(node.log_file or "")
    if PORT_TAKEN in _last_run(log_file):
        raise _PortTaken(node.name)
    raise ServiceStartFailed(node.name, f"process exited with code {code}", log_file)


def _last_run(log_file: Path) -> str:
    """The log of the latest start (``spawn`` heads each with a ``===`` line)."""
    return log_tail(log_file, 200).rpartition("\n=== ")[2]


def _with_url(node: NodeState) -> NodeState:
    """``node`` with the client URL its ports file names (unchanged until it has written one)."""
    urls = client_urls(Path(node.data_dir), node.pid) if node.pid is not None and node.data_dir else []
    return node.model_copy(update={"url": urls[0]}) if urls else node


async def _not_in(http: httpx.AsyncClient, node: NodeState, size: int) -> str | None:
    """``None`` when ``node`` is a healthy member of a ``size`` cluster with a meta leader, else why not."""
    monitoring = node_monitoring_url(node)
    if monitoring is None:
        return f"{node.name} has not started"
    try:
        health = await http.get(f"{monitoring}/healthz")
        jsz = (await http.get(f"{monitoring}/jsz")).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"{node.name} does not answer ({type(exc).__name__})"
    meta = jsz.get("meta_cluster") or {}
    if not meta.get("leader"):
        return f"{node.name} sees no JetStream meta leader"
    if meta.get("cluster_size", 0) < size:
        return f"{node.name} sees {meta.get('cluster_size', 0)} of {size} nodes"
    if health.status_code != 200:
        return f"{node.name} is not healthy yet ({health.text.strip()[:120]})"
    return None
