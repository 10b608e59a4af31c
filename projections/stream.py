"""The JetStream events stream: connect, provision, and refuse limits that drop history.

JetStream is only the transport (PostgreSQL is the source of truth), but a limit on the
stream (max messages, bytes or age, interest/work-queue retention, memory storage) throws
messages away without telling anyone. So the stream is created without limits, and an
existing stream with limits stops the relay unless the operator accepts them explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from projections.errors import (
    NatsUnavailable,
    StreamHasLimits,
    StreamReplicasUnavailable,
    StreamSubjectsMismatch,
)
from projections.subjects import DEFAULT_PREFIX, stream_subjects

log = logging.getLogger(__name__)

DEFAULT_STREAM = "MEMSAGA_EVENTS"
DEFAULT_DUPLICATE_WINDOW = 120.0  # seconds; a relay restart re-sends at most one batch, within seconds
REPLICAS_REFUSED = frozenset({10023, 10074})
"""JetStream's error codes for "insufficient resources" and "replicas > 1 not supported in
non-clustered mode": the stream cannot have the replicas asked for."""


def server_urls(url: str | Sequence[str]) -> list[str]:
    """The servers of a NATS URL setting: comma-separated URLs (``nats://a:4222,nats://b:4222``)
    are the servers of one cluster, tried in turn; nats-py takes them as a list."""
    parts = [url] if isinstance(url, str) else list(url)
    return [one.strip() for part in parts for one in part.split(",") if one.strip()]


async def connect_nats(
    url: str | Sequence[str],
    *,
    name: str,
    reconnect_wait: float = 0.5,
    connect_timeout: float | None = 10.0,
) -> NATS:
    """A NATS client that, once connected, reconnects forever (an outage is waited out).

    ``url`` may name several servers of a cluster (comma-separated or a list): the client
    connects to one that answers and moves to another when it is lost.

    :raises NatsUnavailable: no connection within ``connect_timeout`` seconds (None: wait forever).
    """
    servers = server_urls(url)
    shown = ",".join(servers)
    quiet = False  # after the first report of an outage, failed attempts are logged at DEBUG
    client: NATS | None = None

    async def on_error(exc: Exception) -> None:
        nonlocal quiet
        level = logging.DEBUG if quiet and isinstance(exc, OSError) else logging.WARNING
        quiet = quiet or isinstance(exc, OSError)
        log.log(level, "NATS %s: %s: %s", name, type(exc).__name__, exc)

    async def on_disconnected() -> None:
        nonlocal quiet
        if client is not None and client.is_closed:
            return  # closed on purpose
        quiet = True
        log.warning("NATS %s: disconnected from %s; reconnecting every %gs", name, shown, reconnect_wait)

    async def on_reconnected() -> None:
        nonlocal quiet
        quiet = False
        log.info("NATS %s: reconnected to %s", name, _connected_url(client) or shown)

    connecting = nats.connect(
        servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=reconnect_wait,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    try:
        client = await asyncio.wait_for(connecting, timeout=connect_timeout)
    except TimeoutError:
        raise NatsUnavailable(shown, connect_timeout or 0) from None
    return client


def _connected_url(client: NATS | None) -> str | None:
    current = client.connected_url if client is not None else None
    return current.geturl() if current is not None else None


def stream_config(name: str, subject_prefix: str, duplicate_window: float, replicas: int = 1) -> StreamConfig:
    """File storage, limits retention with every limit off, a duplicate window for re-sends, and
    ``replicas`` copies (on as many servers of a JetStream cluster)."""
    return StreamConfig(
        name=name,
        description="memsaga events (transport only; PostgreSQL is the source of truth)",
        subjects=stream_subjects(subject_prefix),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,  # 0 = unlimited for ages (nats-py sends nanoseconds)
        max_msgs_per_subject=-1,
        max_msg_size=-1,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
    )


def stream_limits(config: StreamConfig) -> list[str]:
    """What in a stream's configuration can drop history (empty when nothing can)."""
    problems = []
    for field in ("max_msgs", "max_bytes", "max_msgs_per_subject"):
        value = getattr(config, field)
        if value is not None and value > 0:
            problems.append(f"{field}={value}")
    if config.max_age:
        problems.append(f"max_age={config.max_age:g}s")
    if config.retention not in (None, RetentionPolicy.LIMITS):
        problems.append(f"retention={config.retention.value} (messages are removed once consumed)")
    if config.storage == StorageType.MEMORY:
        problems.append("storage=memory (lost on restart)")
    return problems


async def ensure_stream(
    js: JetStreamContext,
    name: str = DEFAULT_STREAM,
    *,
    subject_prefix: str = DEFAULT_PREFIX,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    accept_limits: bool = False,
    replicas: int | None = None,
) -> StreamInfo:
    """The events stream, created without limits when missing.

    With ``replicas`` it is created with that many, and an existing stream with fewer is scaled
    up to it (never down: a stream kept on more servers than asked stays so). ``None`` creates
    one replica and leaves an existing stream as it is.

    :raises StreamHasLimits: it exists with limits and ``accept_limits`` is False.
    :raises StreamSubjectsMismatch: it exists but does not capture ``<subject_prefix>.>``.
    :raises StreamReplicasUnavailable: JetStream cannot keep ``replicas`` copies (too few servers).
    """
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        config = stream_config(name, subject_prefix, duplicate_window, replicas or 1)
        return await _refusing_replicas(js.add_stream(config), name, replicas or 1)
    wanted = stream_subjects(subject_prefix)
    subjects = info.config.subjects or []
    if not set(wanted) <= set(subjects):
        raise StreamSubjectsMismatch(name, subjects, wanted)
    problems = stream_limits(info.config)
    if problems:
        if not accept_limits:
            raise StreamHasLimits(name, problems)
        log.warning(
            "JetStream stream %r has limits that silently drop history (%s); running anyway because they "
            "were accepted. Projections rebuild from PostgreSQL, but live consumers may miss messages.",
            name,
            "; ".join(problems),
        )
    have = info.config.num_replicas or 1
    if replicas is not None and have < replicas:
        log.warning("JetStream stream %r: scaling from %d to %d replicas", name, have, replicas)
        info.config.num_replicas = replicas
        return await _refusing_replicas(js.update_stream(info.config), name, replicas)
    return info


async def _refusing_replicas(request: Awaitable[StreamInfo], stream: str, replicas: int) -> StreamInfo:
    """``await request``, JetStream's refusal of the replicas as :class:`StreamReplicasUnavailable`."""
    try:
        return await request
    except nats.js.errors.APIError as exc:
        if exc.err_code in REPLICAS_REFUSED:
            raise StreamReplicasUnavailable(stream, replicas, exc.description or str(exc)) from None
        raise


def describe_limits(problems: Sequence[str]) -> str:
    """One line for operators: what the limits are, or that there are none."""
    return "; ".join(problems) if problems else "none (file storage, nothing expires)"
