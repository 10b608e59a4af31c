"""The local stack: start what the environment doesn't name, reuse what it does, record it all.

``up`` and ``down`` hold an exclusive lock on ``<state_dir>/.lock`` so two of them
never race on the same state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats.errors

from eventstore.keys import MasterKey
from memsaga.devstack.errors import (
    DevstackError,
    NatsClusterMismatch,
    NatsClusterNotFormed,
    ServiceUnreachable,
    StackConflict,
)
from memsaga.devstack.nats import probe_nats, start_nats
from memsaga.devstack.nats_cluster import (
    NodeHealth,
    cluster_health,
    node_runs,
    restart_nodes,
    start_nats_cluster,
    stop_nats_cluster,
)
from memsaga.devstack.ports import free_port, port_is_free
from memsaga.devstack.postgres import probe_postgres, start_postgres, stop_postgres
from memsaga.devstack.process import runs, terminate
from memsaga.devstack.temporal import connect, ensure_search_attributes, probe_temporal, start_temporal
from memsaga.settings import Settings
from memsaga.stackstate import (
    ServiceState,
    StackState,
    ensure_master_key_file,
    load_stack_state,
    save_stack_state,
)
from projections.errors import StreamReplicasUnavailable
from projections.stream import connect_nats, ensure_stream

SERVICES = ("postgres", "nats", "temporal")
ENV_VARS = {
    "postgres": "MEMSAGA_DATABASE_URL",
    "nats": "MEMSAGA_NATS_URL",
    "temporal": "MEMSAGA_TEMPORAL_ADDRESS",
}


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` found for one service (``url``/``managed`` are None when never started)."""

    name: str
    up: bool
    url: str | None = None
    ui_url: str | None = None
    managed: bool | None = None
    pid: int | None = None
    nodes: list[NodeHealth] | None = None  # NATS as a cluster: each of its servers


async def up(
    settings: Settings, *, prefer_default_ports: bool = True, nats_cluster: int | None = None
) -> StackState:
    """Reuse the services the settings name, start the others (or keep them running).

    Started services take the default ports when ``prefer_default_ports`` and those are
    free, else free ones. Every service that came up is recorded, even when another failed.
    With ``nats_cluster``, NATS is that many servers as one JetStream cluster (free ports only),
    and the events stream is created on it with their replicas; a cluster recorded before is
    kept (its stopped nodes started again) whether or not ``nats_cluster`` is given.

    :raises ServiceUnreachable: a service named by the environment does not answer.
    :raises StackConflict: the environment names a service that ``up`` already runs elsewhere.
    :raises NatsClusterMismatch: a cluster is asked for but another NATS is in use.
    :raises DevstackError: a service failed to start (the first such error).
    """
    state_dir = settings.state_dir
    with _locked(state_dir):
        ensure_master_key_file(state_dir, lambda: MasterKey.generate().text())
        state = load_stack_state(state_dir)
        named = _named_urls(settings, state)
        if nats_cluster is not None:
            _check_cluster_request(nats_cluster, state.services.get("nats"), "nats" in named)
        reused = await asyncio.gather(*(_reuse(name, url, settings) for name, url in named.items()))
        pending = [name for name in SERVICES if name not in named]
        results = await asyncio.gather(
            *(
                _ensure_running(name, state.services.get(name), state_dir, prefer_default_ports, nats_cluster)
                for name in pending
            ),
            return_exceptions=True,
        )
        services = {service.name: service for service in reused}
        failures: list[BaseException] = []
        for name, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
                recorded = state.services.get(name)
                if recorded is not None and _running(recorded):  # e.g. a cluster missing a node
                    services[name] = recorded  # still recorded, so that `down` stops it
            else:
                services[result.name] = result
        new_state = StackState(services={name: services[name] for name in SERVICES if name in services})
        save_stack_state(state_dir, new_state)
        cluster = new_state.services.get("nats")
        if cluster is not None and cluster.nodes and not failures:
            try:
                await ensure_cluster_stream(settings, cluster)
            except DevstackError as exc:
                failures.append(exc)
    if failures:
        raise failures[0]
    return new_state


async def down(settings: Settings) -> list[ServiceState]:
    """Stop the services ``up`` started and forget them; reused ones stay running and recorded.

    Returns the services stopped.
    """
    with _locked(settings.state_dir):
        state = load_stack_state(settings.state_dir)
        managed = [service for service in state.services.values() if service.managed]
        await asyncio.gather(*(asyncio.to_thread(stop_service, service) for service in managed))
        for service in managed:
            del state.services[service.name]
        save_stack_state(settings.state_dir, state)
    return managed


async def status(settings: Settings) -> list[ServiceStatus]:
    """Each service of the stack, up or down (probed, not just looked up)."""
    state = load_stack_state(settings.state_dir)
    return list(await asyncio.gather(*(_status(name, state.services.get(name)) for name in SERVICES)))


def stop_service(service: ServiceState, timeout: float = 15.0) -> None:
    """Stop one started service: ``pg_ctl stop -m fast`` for PostgreSQL, else SIGTERM then SIGKILL.

    A recorded pid that now belongs to another process is left alone.
    """
    if service.name == "postgres":
        stop_postgres(service, timeout=timeout)
    elif service.nodes:
        stop_nats_cluster(service, timeout=timeout)
    elif service.pid is not None and runs(service.pid, service.data_dir):
        terminate(service.pid, timeout=timeout)


async def probe(name: str, url: str) -> str | None:
    """``None`` when service ``name`` answers at ``url``, else why not."""
    if name == "postgres":
        return await probe_postgres(url)
    if name == "nats":
        return await probe_nats(url)
    return await probe_temporal(url)


def _running(service: ServiceState | None) -> bool:
    """Whether ``service`` is one ``up`` started and its process (a cluster: any node's) still runs."""
    if service is None or not service.managed:
        return False
    if service.nodes:
        return any(node_runs(node) for node in service.nodes)
    return runs(service.pid, service.data_dir)


async def _ensure_running(
    name: str,
    recorded: ServiceState | None,
    state_dir: Path,
    prefer_default_ports: bool,
    nats_cluster: int | None = None,
) -> ServiceState:
    if name == "nats" and (nats_cluster is not None or (recorded is not None and recorded.nodes)):
        return await _ensure_cluster(recorded, state_dir, nats_cluster)
    if recorded is not None and _running(recorded):
        if await probe(name, recorded.url) is None:
            return recorded
        await asyncio.to_thread(stop_service, recorded)  # alive but deaf: replace it
    # Back where it was, so that running processes find it again (unless the port was taken).
    port = _free_recorded_port(recorded.url) if recorded is not None and recorded.managed else None
    if name == "postgres":
        return await start_postgres(state_dir, port=port, prefer_default_port=prefer_default_ports)
    if name == "nats":
        return await start_nats(state_dir, port=port, prefer_default_port=prefer_default_ports)
    ui_port = _free_recorded_port(recorded.ui_url) if recorded is not None and recorded.ui_url else None
    ports = (port, ui_port or free_port(exclude=(port,))) if port is not None else None
    codec_port = (
        _free_recorded_port(recorded.codec_url) if recorded is not None and recorded.codec_url else None
    )
    return await start_temporal(
        state_dir, ports=ports, codec_port=codec_port, prefer_default_ports=prefer_default_ports
    )


def _check_cluster_request(size: int, recorded: ServiceState | None, named: bool) -> None:
    """Refuse, before anything starts, a cluster of ``size`` where another NATS is in use.

    :raises NatsClusterMismatch: MEMSAGA_NATS_URL names one, or the stack runs another.
    """
    if named:
        raise NatsClusterMismatch(size, "MEMSAGA_NATS_URL names a NATS to use", "unset MEMSAGA_NATS_URL")
    if recorded is not None and recorded.nodes and len(recorded.nodes) != size:
        raise NatsClusterMismatch(size, f"the local stack has a NATS cluster of {len(recorded.nodes)}")
    if recorded is not None and not recorded.nodes and _running(recorded):
        raise NatsClusterMismatch(size, f"the local stack runs a single NATS server at {recorded.url}")


async def _ensure_cluster(recorded: ServiceState | None, state_dir: Path, size: int | None) -> ServiceState:
    """The recorded NATS cluster with its stopped nodes started again, or a new one of ``size``."""
    if recorded is not None and recorded.nodes:
        return await restart_nodes(recorded)
    return await start_nats_cluster(state_dir, size or 3)


CLUSTER_STREAM_TIMEOUT = 15.0


async def ensure_cluster_stream(settings: Settings, cluster: ServiceState) -> None:
    """The events stream on the stack's NATS cluster, with the cluster's replicas.

    JetStream may refuse the replicas for a moment after the cluster formed (a node not yet
    counted as a peer with room): that is retried for :data:`CLUSTER_STREAM_TIMEOUT` seconds.

    :raises NatsClusterNotFormed: the stream could not be placed on enough nodes in time.
    """
    replicas = settings.nats_replicas or cluster.replicas or 1
    nc = await connect_nats(cluster.url, name="memsaga-dev-up", connect_timeout=10.0)
    deadline = asyncio.get_running_loop().time() + CLUSTER_STREAM_TIMEOUT
    try:
        while True:
            try:
                await ensure_stream(
                    nc.jetstream(timeout=5.0),
                    settings.nats_stream,
                    subject_prefix=settings.subject_prefix,
                    duplicate_window=settings.stream_duplicate_window_seconds,
                    replicas=replicas,
                )
                return
            except (StreamReplicasUnavailable, TimeoutError, nats.errors.Error) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    logs = [Path(n.log_file or "") for n in cluster.nodes]
                    reason = f"stream {settings.nats_stream} with {replicas} replicas: {exc}"
                    raise NatsClusterNotFormed(CLUSTER_STREAM_TIMEOUT, [reason], logs) from None
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


def _free_recorded_port(url: str | None) -> int | None:
    """The port of a recorded URL when it can be bound again, else None."""
    parts = urlsplit(url if url and "://" in url else f"tcp://{url}")
    try:
        port = parts.port
    except ValueError:
        return None
    return port if port is not None and port_is_free(port) else None


RESTART_AFTER_MOVE = {
    "postgres": "memsaga worker, memsaga relay, memsaga project (and the MCP server)",
    "nats": "memsaga relay, memsaga project",
    "temporal": "memsaga worker",
}
"""Which long-running processes hold a connection to each service (and must be restarted when it moves)."""


def moved(before: StackState, after: StackState) -> list[str]:
    """What to tell the user about services ``up`` brought back on another address than before.

    A service is restarted on its recorded port; when that port was taken, it comes back
    elsewhere, and processes still connected to the old address never find it.
    """
    notes = []
    for name, service in after.services.items():
        previous = before.services.get(name)
        if previous is None or not (previous.managed and service.managed) or previous.url == service.url:
            continue
        notes.append(
            f"{name} came back at {service.url}, not at {previous.url} (that port is taken): "
            f"restart {RESTART_AFTER_MOVE[name]} if they run, they still look for {previous.url}"
        )
    return notes


async def _reuse(name: str, url: str, settings: Settings) -> ServiceState:
    reason = await probe(name, url)
    if reason is not None:
        raise ServiceUnreachable(name, ENV_VARS[name], url, reason)
    if name != "temporal":
        return ServiceState(name=name, url=url, managed=False)
    client = await connect(url, settings.temporal_namespace)
    await ensure_search_attributes(client)
    return ServiceState(name=name, url=url, managed=False, ui_url=settings.temporal_ui_url)


async def _status(name: str, recorded: ServiceState | None) -> ServiceStatus:
    if recorded is None:
        return ServiceStatus(name=name, up=False)
    alive = not recorded.managed or _running(recorded)
    answers = alive and await probe(name, recorded.url) is None
    return ServiceStatus(
        name=name,
        up=answers,
        url=recorded.url,
        ui_url=recorded.ui_url,
        managed=recorded.managed,
        pid=recorded.pid if answers else None,
        nodes=await cluster_health(recorded) if recorded.nodes else None,
    )


def _named_urls(settings: Settings, state: StackState) -> dict[str, str]:
    """The services to reuse: those the settings name, unless it names the one ``up`` runs."""
    urls = {
        "postgres": settings.database_url,
        "nats": settings.nats_url,
        "temporal": settings.temporal_address,
    }
    named: dict[str, str] = {}
    for name, url in urls.items():
        recorded = state.services.get(name)
        if not url:
            continue
        if recorded is not None and _running(recorded):
            if recorded.url != url:
                raise StackConflict(name, ENV_VARS[name], recorded.url)
            continue  # e.g. the URLs `up` printed were exported: keep managing our own server
        named[name] = url
    return named


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
