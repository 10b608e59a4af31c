"""The checks ``memsaga doctor`` runs on NATS: reachable, the events stream's storage, limits and
replicas, where its replicas stand in a cluster, and whether the server syncs every write to disk
(from its monitoring endpoint)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig, StreamInfo

from memsaga.devstack.nats import monitoring_url
from memsaga.devstack.nats_cluster import node_monitoring_url
from memsaga.doctor.model import Check, ok, problem, warn
from memsaga.settings import Settings
from memsaga.stackstate import load_stack_state
from projections.stream import server_urls, stream_limits

SYNC_HINT = (
    "run nats-server with `jetstream { sync_interval: always }` in its configuration (as `memsaga dev up`"
    " does): with the default, a machine crash can lose writes JetStream acknowledged; PostgreSQL keeps"
    " them, and `memsaga relay --from-position N` publishes them again"
)


async def connect(url: str, timeout: float) -> NATS:
    """One attempt to connect, quiet (no reconnects, no logged errors).

    :raises OSError | TimeoutError | nats.errors.Error: NATS does not answer.
    """

    async def quiet(_: Exception) -> None:
        return None

    connecting = nats.connect(
        server_urls(url),
        name="memsaga-doctor",
        connect_timeout=timeout,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
    )
    return await asyncio.wait_for(connecting, timeout * 2)


def _seconds(value: float | None) -> str:
    return "none" if not value else f"{value:g}s"


def _limit(value: int | None) -> str:
    return "none" if value is None or value < 0 else f"{value:,}"


def _name(value: object, default: str) -> str:
    """An enum's value; nats-py leaves some as the server's strings."""
    return default if value is None else str(getattr(value, "value", value))


def describe_stream(config: StreamConfig) -> str:
    """Storage, limits, discard policy, duplicate window and replicas, on one line."""
    storage, discard = _name(config.storage, "file"), _name(config.discard, "old")
    return (
        f"{storage} storage, retention {_name(config.retention, 'limits')},"
        f" max age {_seconds(config.max_age)}, max bytes {_limit(config.max_bytes)},"
        f" max msgs {_limit(config.max_msgs)}, per subject {_limit(config.max_msgs_per_subject)},"
        f" discard {discard}, duplicate window {_seconds(config.duplicate_window)},"
        f" {config.num_replicas or 1} replica(s)"
    )


async def stream_checks(nc: NATS, stream: str, replicas: int) -> list[Check]:
    """The events stream (:func:`stream_check`) and, when it has replicas, :func:`cluster_check`."""
    name = "jetstream.stream"
    try:
        info = await nc.jetstream(timeout=5.0).stream_info(stream)
    except nats.js.errors.NotFoundError:
        return [warn(name, f"{stream} does not exist yet", "start `memsaga relay`: it creates the stream")]
    except (nats.errors.Error, TimeoutError) as exc:
        return [
            problem(name, f"JetStream does not answer: {exc!r}", "is JetStream enabled (nats-server -js)?")
        ]
    checks = [stream_check(info)]
    if (info.config.num_replicas or 1) > 1 or replicas > 1:
        checks.append(cluster_check(info, replicas))
    return checks


def stream_check(info: StreamInfo) -> Check:
    """The events stream: storage, limits, replicas. Memory storage or a limit is a problem."""
    name, stream = "jetstream.stream", info.config.name
    detail = f"{stream}: {describe_stream(info.config)}"
    limits = stream_limits(info.config)
    if limits:
        return problem(
            name,
            f"{detail}; drops history: {'; '.join(limits)}",
            f"recreate {stream} with file storage and no limits (delete it and start `memsaga relay`,"
            " then `memsaga relay --from-position 1` if projections must catch up from JetStream)",
        )
    return ok(name, detail)


def cluster_check(info: StreamInfo, replicas: int) -> Check:
    """Where the stream's replicas stand: its leader, and each other replica current or not.

    No leader is a problem (no quorum: nothing can be published); a replica offline or behind,
    or fewer replicas than ``MEMSAGA_NATS_REPLICAS``, is a warning (one more loss stops writes).
    """
    name, stream = "jetstream.cluster", info.config.name
    have = info.config.num_replicas or 1
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return problem(
            name,
            f"{stream} has no leader: fewer than {have // 2 + 1} of its {have} replicas are up",
            "start the NATS servers that are down (`memsaga dev up` restarts the local cluster's)",
        )
    peers = [f"leader {cluster.leader}"]
    behind: list[str] = []
    for peer in cluster.replicas or []:
        seen = f", last seen {peer.active / 1e9:.0f}s ago" if peer.active else ""
        state = "offline" if peer.offline else "current" if peer.current else f"not current{seen}"
        peers.append(f"{peer.name} {state}")
        if peer.offline or not peer.current:
            behind.append(peer.name or "?")
    detail = f"{stream}: {have} replicas on cluster {cluster.name}: {', '.join(peers)}"
    if behind:
        return warn(
            name,
            detail,
            f"bring {', '.join(behind)} back: the stream keeps working while a quorum"
            f" ({have // 2 + 1} of {have}) is up, but one more loss stops publishing",
        )
    if have < replicas:
        return warn(
            name,
            f"{detail}; MEMSAGA_NATS_REPLICAS asks for {replicas}",
            "start `memsaga relay`: it scales the stream up to the replicas asked for",
        )
    return ok(name, detail)


def find_monitoring_url(settings: Settings, nats_url: str) -> str | None:
    """``MEMSAGA_NATS_MONITORING_URL``, else the local stack's server's (when it is the one used)."""
    if settings.nats_monitoring_url:
        return settings.nats_monitoring_url.rstrip("/")
    service = load_stack_state(settings.state_dir).services.get("nats")
    if service is None or service.url != nats_url:
        return None
    for node in service.nodes:  # a cluster: the first node that runs
        url = node_monitoring_url(node)
        if url is not None:
            return url
    if not service.data_dir or service.pid is None:
        return None
    return monitoring_url(Path(service.data_dir), service.pid)


async def sync_check(settings: Settings, nats_url: str) -> Check:
    """Whether the server syncs every JetStream write (``/varz``: ``jetstream.config.sync_always``)."""
    name = "jetstream.sync"
    url = find_monitoring_url(settings, nats_url)
    if url is None:
        return warn(
            name,
            "unknown: no monitoring endpoint known for this server",
            "set MEMSAGA_NATS_MONITORING_URL to its monitoring endpoint (nats-server -m PORT) to check it",
        )
    try:
        async with httpx.AsyncClient(timeout=3.0) as http:
            varz = (await http.get(f"{url}/varz")).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return warn(
            name, f"unknown: {url}/varz does not answer ({exc!r})", "check MEMSAGA_NATS_MONITORING_URL"
        )
    config = (varz.get("jetstream") or {}).get("config") or {}
    if config.get("sync_always"):
        return ok(name, f"every write synced to disk (sync_interval: always; {url}/varz)")
    interval = config.get("sync_interval")
    every = f"every {interval / 1e9:g}s" if isinstance(interval, int | float) else "on the default interval"
    return warn(name, f"writes are synced {every}, not always ({url}/varz)", SYNC_HINT)
