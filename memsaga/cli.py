"""The ``memsaga`` command line: one typer app composed of per-area sub-apps."""

from __future__ import annotations

import typer

from memsaga.cli_bench import register_bench_commands
from memsaga.cli_demo import register_demo_commands
from memsaga.cli_dev import dev_app
from memsaga.cli_projections import register_projection_commands
from memsaga.cli_relay import register_relay_commands
from memsaga.cli_saga import register_saga_commands
from memsaga.cli_store import register_store_commands
from memsaga.cli_trace import register_trace_commands
from memsaga.telemetry import setup_tracing

app = typer.Typer(
    name="memsaga",
    help="Event-sourced long-term memory for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev_app, name="dev", help="Start, stop and inspect the local stack.")
register_store_commands(app)
register_demo_commands(app)
register_saga_commands(app)
register_trace_commands(app)
register_relay_commands(app)
register_projection_commands(app)
register_bench_commands(app)

_ROLES = {"worker": "worker", "relay": "relay", "project": "projector"}


@app.callback()
def _tracing(ctx: typer.Context) -> None:
    """Event-sourced long-term memory for AI agents."""
    setup_tracing(_ROLES.get(ctx.invoked_subcommand or "", "client"))


def main() -> None:
    """Console-script entry point."""
    app()
