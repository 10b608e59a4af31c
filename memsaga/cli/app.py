"""The ``memsaga`` typer app, composed of one sub-app per area."""

from __future__ import annotations

import os
import sys

import typer

from eventstore import failpoints
from memsaga.cli.bench import register_bench_commands
from memsaga.cli.chaos import register_chaos_commands
from memsaga.cli.codec import register_codec_commands
from memsaga.cli.common import EXIT_CODES_HELP, ExitCode, fail
from memsaga.cli.demo import register_demo_commands
from memsaga.cli.dev import register_dev_commands
from memsaga.cli.dlq import register_dlq_commands
from memsaga.cli.doctor import register_doctor_commands
from memsaga.cli.eval import register_eval_commands
from memsaga.cli.forget import register_forget_commands
from memsaga.cli.history import register_history_commands
from memsaga.cli.keys import register_keys_commands
from memsaga.cli.mcp import register_mcp_commands
from memsaga.cli.projections import register_projection_commands
from memsaga.cli.read_models import register_read_model_commands
from memsaga.cli.reextract import register_reextract_commands
from memsaga.cli.relay import register_relay_commands
from memsaga.cli.retract import register_retract_commands
from memsaga.cli.saga import register_saga_commands
from memsaga.cli.schema import register_schema_commands
from memsaga.cli.search import register_search_commands
from memsaga.cli.store import register_store_commands
from memsaga.cli.trace import register_trace_commands
from memsaga.cli.verify import register_verify_commands
from memsaga.errors import InvalidSettings
from memsaga.settings import load_settings
from memsaga.telemetry import setup_metrics, setup_tracing

app = typer.Typer(
    name="memsaga",
    help="Event-sourced long-term memory for AI agents.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# The order here is the order of `memsaga --help` (commands first, then groups).
register_dev_commands(app)
register_store_commands(app)
register_demo_commands(app)
register_saga_commands(app)
register_retract_commands(app)
register_reextract_commands(app)
register_forget_commands(app)
register_keys_commands(app)
register_codec_commands(app)
register_trace_commands(app)
register_relay_commands(app)
register_projection_commands(app)
register_dlq_commands(app)
register_verify_commands(app)
register_chaos_commands(app)
register_read_model_commands(app)
register_history_commands(app)
register_search_commands(app)
register_mcp_commands(app)
register_doctor_commands(app)
register_bench_commands(app)
register_eval_commands(app)
register_schema_commands(app)

_ROLES = {"worker": "worker", "relay": "relay", "project": "projector", "mcp": "mcp"}


@app.callback()
def _start(ctx: typer.Context) -> None:
    """Event-sourced long-term memory for AI agents."""
    if not {"--help", "-h"} & set(sys.argv[1:]):
        try:
            settings = load_settings()  # once, before any command: a bad variable is named, not a traceback
        except InvalidSettings as exc:
            raise fail(
                f"{exc} (fix or unset the variable)", error="InvalidSettings", code=ExitCode.CONFIG
            ) from None
        failpoints.install(settings.failpoints)  # valid: load_settings checked it
    setup_tracing(_ROLES.get(ctx.invoked_subcommand or "", "client"))
    setup_metrics(_ROLES.get(ctx.invoked_subcommand or "", "client"))


def main() -> None:
    """Console-script entry point: an error no command names (a bug) is one line, not a
    traceback, unless ``MEMSAGA_DEBUG`` is set."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("MEMSAGA_DEBUG"):
            raise
        message = (
            f"unexpected {type(exc).__name__}: {exc}. This is a bug in memsaga: please report it with"
            " what `MEMSAGA_DEBUG=1 memsaga …` prints (the same command, with its traceback)"
        )
        raise SystemExit(fail(message, error=type(exc).__name__, code=ExitCode.ERROR).exit_code) from None
