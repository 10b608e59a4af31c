"""``memsaga dev up | down | status``: the local stack from pip-installed binaries."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from memsaga.cli.common import JsonFlag, console, errors, run_command
from memsaga.devstack import ServiceStatus, down, moved, status, up
from memsaga.devstack.nats_cluster import SIZES
from memsaga.settings import Settings
from memsaga.stackstate import ServiceState, StackState, load_stack_state

dev_app = typer.Typer(no_args_is_help=True)

NatsClusterOption = Annotated[
    int | None,
    typer.Option(
        "--nats-cluster",
        min=SIZES.start,
        max=SIZES.stop - 1,
        help="run NATS as this many servers in one JetStream cluster, the events stream on 3 of them"
        " (docs/deploy.md, A NATS cluster)",
        show_default=False,
    ),
]


@dev_app.command("up")
def up_command(as_json: JsonFlag = False, nats_cluster: NatsClusterOption = None) -> None:
    """Start PostgreSQL, NATS (JetStream) and Temporal unless MEMSAGA_* variables name them."""
    settings = Settings()
    before = load_stack_state(settings.state_dir)
    spinner = contextlib.nullcontext() if as_json else console.status("starting the local stack…")
    with spinner:
        state = run_command(lambda: up(settings, nats_cluster=nats_cluster))
    for note in moved(before, state):
        errors.print(Text("warning: ", style="bold yellow") + Text(note), soft_wrap=True)
    if as_json:
        print(json.dumps(_urls(state), indent=2))
        return
    table = _table("action")
    for service in state.services.values():
        previous = before.services.get(service.name)
        kept = previous is not None and service.managed and previous.pid == service.pid
        action = "started" if service.managed and not kept else "running" if kept else "reused"
        table.add_row(service.name, action, _url_cell(service.url, service.ui_url), _mode(service.managed))
    console.print(table)


@dev_app.command("down")
def down_command() -> None:
    """Stop the services `dev up` started; reused services keep running."""
    settings = Settings()
    stopped = run_command(lambda: down(settings))
    for service in stopped:
        console.print(f"stopped {service.name} ({_pids(service)})")
    for service in load_stack_state(settings.state_dir).services.values():
        console.print(f"left running: {service.name} at {service.url} (reused)")
    if not stopped:
        console.print("nothing to stop")


@dev_app.command("status")
def status_command(as_json: JsonFlag = False) -> None:
    """Show each service: up or down, its URL, and whether `dev up` manages it."""
    services = run_command(lambda: status(Settings()))
    if as_json:
        print(json.dumps([_status_dict(service) for service in services], indent=2))
        return
    table = _table("state")
    for service in services:
        state = Text("up", style="green") if service.up else Text("down", style="red")
        url = _url_cell(service.url, service.ui_url)
        if service.nodes:  # a cluster: its nodes' URLs on their own rows
            url = f"cluster: {sum(node.up for node in service.nodes)} of {len(service.nodes)} nodes up"
        table.add_row(service.name, state, url, _mode(service.managed))
        for node in service.nodes or []:
            node_state = Text("up", style="green") if node.up else Text("down", style="red")
            table.add_row(f"  {node.name}", node_state, node.url, "")
    console.print(table)


def _urls(state: StackState) -> dict[str, str | int | None]:
    """The stack's URLs under the names of the matching Settings fields."""
    services = state.services
    temporal = services.get("temporal")
    return {
        "database_url": services["postgres"].url if "postgres" in services else None,
        "nats_url": services["nats"].url if "nats" in services else None,
        "temporal_address": temporal.url if temporal else None,
        "temporal_ui_url": temporal.ui_url if temporal else None,
        "nats_replicas": services["nats"].replicas if "nats" in services else None,
    }


def _status_dict(service: ServiceStatus) -> dict[str, object]:
    return {
        "name": service.name,
        "up": service.up,
        "url": service.url,
        "ui_url": service.ui_url,
        "managed": service.managed,
        "pid": service.pid,
        "nodes": None
        if service.nodes is None
        else [{"name": n.name, "up": n.up, "url": n.url, "pid": n.pid} for n in service.nodes],
    }


def _pids(service: ServiceState) -> str:
    if service.nodes:
        return f"{len(service.nodes)} nodes, pids {', '.join(str(n.pid) for n in service.nodes)}"
    return f"pid {service.pid}"


def _table(second: str) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("service", second, "url", "mode"):
        table.add_column(column)
    return table


def _url_cell(url: str | None, ui_url: str | None) -> str:
    if url is None:
        return "-"
    url = url.replace(",", "\n")  # a cluster's servers, one a line
    return f"{url}\nUI {ui_url}" if ui_url else url


def _mode(managed: bool | None) -> str:
    return "-" if managed is None else "managed" if managed else "reused"


def register_dev_commands(app: typer.Typer) -> None:
    """Attach ``dev up | down | status`` to the main app."""
    app.add_typer(dev_app, name="dev", help="Start, stop and inspect the local stack.")
