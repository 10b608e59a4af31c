"""``memsaga doctor``: is every service there, durable, and keeping up? With what to do if not."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text

from memsaga.cli.common import ExitCode, JsonFlag, console, exits_at_once, keep_whole, run_command
from memsaga.doctor.model import Report, Status
from memsaga.doctor.report import run_doctor
from memsaga.settings import Settings

_STYLES = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.PROBLEM: "bold red",
    Status.UNREACHABLE: "bold red",
}


def exit_code(report: Report) -> ExitCode:
    """4 when a service is unreachable, else 1 when a check found a problem, else 0 (warnings too)."""
    worst = report.worst
    if worst is Status.UNREACHABLE:
        return ExitCode.UNAVAILABLE
    return ExitCode.ERROR if worst is Status.PROBLEM else ExitCode.OK


def doctor_command(as_json: JsonFlag = False) -> None:
    """Check each service, PostgreSQL's durability, the JetStream stream, relay and projection lag.

    Each problem comes with what to do. Exit 0 when nothing is wrong (warnings allowed), 1 when a
    check found a problem, 4 when a service cannot be reached.
    """
    report = run_command(lambda: run_doctor(Settings()))
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        table = Table("check", "status", "detail", "what to do")
        for check in report.checks:
            style = _STYLES[check.status]
            table.add_row(check.name, Text(check.status.value, style=style), check.detail, check.hint or "")
        console.print(keep_whole(table, "check"))
        summary = "all good" if report.worst is Status.OK else f"worst: {report.worst.value}"
        console.print(summary, style=_STYLES[report.worst])
    code = exit_code(report)
    if code is not ExitCode.OK:
        raise typer.Exit(code=int(code))


def register_doctor_commands(app: typer.Typer) -> None:
    """Attach ``doctor`` to the main app."""
    app.command("doctor")(exits_at_once(doctor_command))
