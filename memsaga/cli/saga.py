"""``memsaga worker | extract | status | approve | reject | cancel``: run and steer extraction sagas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from temporalio.client import Client
from temporalio.service import RPCError

from memsaga.bootstrap import check_adapters
from memsaga.cli.common import JsonFlag, console, errors, exits_at_once, fail, signal_stop
from memsaga.client import (
    ExtractionFailed,
    approve_extraction,
    cancel_extraction,
    connect,
    extraction_options,
    extraction_outcome,
    extraction_status,
    reject_extraction,
    start_extraction_of_text,
)
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from memsaga.worker import run_worker
from sagas.memory_extraction.domain import ExtractionRequest, ExtractionResult, InvalidExtractionRequest
from sagas.memory_extraction.ports import AdapterError

T = TypeVar("T")

WorkflowIdArg = Annotated[str, typer.Argument(help="The saga's workflow id (extract-…).")]
ReviewerOption = Annotated[
    str | None, typer.Option("--reviewer", help="Who decides (recorded in the event).")
]


def _run(make: Callable[[Settings, Client], Awaitable[T]]) -> T:
    """Connect, run, and turn connection and saga errors into messages that say what to do."""

    async def main() -> T:
        settings = Settings()
        return await make(settings, await connect(settings))

    try:
        return asyncio.run(main())
    except (MemsagaError, InvalidExtractionRequest, AdapterError) as exc:
        raise fail(str(exc)) from None
    except RPCError as exc:
        raise fail(f"Temporal refused: {exc}") from None
    except RuntimeError as exc:  # temporalio's "failed client connect"
        raise fail(f"{exc}: is Temporal running? start it with `memsaga dev up`") from None


def worker_command() -> None:
    """Run workflows and activities on the task queue until SIGTERM or Ctrl-C."""
    settings = Settings()

    def ready() -> None:
        print(
            f"memsaga worker ready: task queue {settings.task_queue}, namespace {settings.temporal_namespace}"
        )
        sys.stdout.flush()

    async def main() -> None:
        await run_worker(settings, signal_stop(), on_ready=ready)

    try:
        asyncio.run(main())
    except (MemsagaError, AdapterError) as exc:
        raise fail(str(exc)) from None
    except RuntimeError as exc:
        raise fail(f"{exc}: are Temporal and PostgreSQL running? (`memsaga dev up`)") from None
    print("memsaga worker stopped")


def extract_command(
    user: Annotated[str, typer.Option("--user", help="Whose memories these are.")],
    text: Annotated[str | None, typer.Option("--text", help="The episode's text.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the episode from this file ('-': stdin).")
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", help="Defaults to the workflow id.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--id", help="Idempotency key: workflow id extract-<KEY>.")
    ] = None,
    source: Annotated[str, typer.Option("--source", help="Where the episode comes from.")] = "chat",
    review: Annotated[bool, typer.Option("--review", help="Always wait for a human review.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the saga finishes.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a memory-extraction saga (twice with the same --id: still one saga)."""
    episode = _episode_text(text, file)

    try:  # before connecting or recording anything: a misconfigured saga would only fail
        check_adapters(Settings())
    except AdapterError as exc:
        raise fail(str(exc)) from None

    async def start(settings: Settings, client: Client) -> dict[str, Any]:
        options = extraction_options(settings, review=review)
        request = ExtractionRequest(
            user_id=user, text=episode, source=source, correlation_id=correlation_id, options=options
        )
        handle = await start_extraction_of_text(client, request, settings=settings, workflow_id=key)
        shown: dict[str, Any] = handle.model_dump()
        if not as_json:
            _print_fields(shown)  # the ids first: `approve`, `status` and `trace` need them
        if wait:
            outcome = await _waiting(client, handle.workflow_id, quiet=as_json)
            shown["result"] = outcome.model_dump()
        return shown

    shown = _run(start)
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
    elif "result" in shown:
        _print_fields(shown["result"])
    if wait and shown["result"]["outcome"] not in ("completed", "rejected"):
        raise typer.Exit(code=1)


async def _waiting(client: Client, workflow_id: str, *, quiet: bool) -> ExtractionResult | ExtractionFailed:
    """The saga's outcome; meanwhile (unless ``quiet``) a spinner says which step it is at and,
    when it waits for a human, how to answer."""
    outcome = asyncio.ensure_future(extraction_outcome(client, workflow_id))
    if quiet:
        return await outcome
    said = ""
    with errors.status(f"waiting for {workflow_id}") as spinner:
        while not outcome.done():
            with contextlib.suppress(RPCError, RuntimeError):  # no worker polls yet: keep waiting
                status = await extraction_status(client, workflow_id)
                if status.waiting_for_review:
                    reasons = "; ".join(status.review_reasons) or "a review was asked for"
                    say = (
                        f"waiting for a review ({reasons}): `memsaga approve {workflow_id}` or"
                        f" `memsaga reject {workflow_id}`"
                    )
                else:
                    say = f"{workflow_id}: step {status.step}"
                spinner.update(say)
                if not errors.is_terminal and status.waiting_for_review and say != said:
                    errors.print(say, highlight=False, soft_wrap=True)  # no spinner in a log: say it once
                said = say
            await asyncio.wait([outcome], timeout=1.0)
    return await outcome


def _episode_text(text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise fail("give exactly one of --text or --file")
    if file is None:
        assert text is not None
        return text
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc}") from None


def status_command(workflow_id: WorkflowIdArg, as_json: JsonFlag = False) -> None:
    """Show the saga's step, counts and whether it waits for a review."""

    async def query(settings: Settings, client: Client) -> dict[str, Any]:
        return (await extraction_status(client, workflow_id)).model_dump()

    status = _run(query)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        _print_fields(status)


def approve_command(
    workflow_id: WorkflowIdArg,
    reviewer: ReviewerOption = None,
    note: Annotated[str | None, typer.Option("--note", help="Why it is fine.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve the candidates a saga waits on: it stores them."""
    _run(lambda _, client: approve_extraction(client, workflow_id, reviewer=reviewer, note=note))
    _done("approve", workflow_id, as_json)


def reject_command(
    workflow_id: WorkflowIdArg,
    reviewer: ReviewerOption = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why not (recorded in the event).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject the candidates a saga waits on: it compensates."""
    _run(lambda _, client: reject_extraction(client, workflow_id, reviewer=reviewer, reason=reason))
    _done("reject", workflow_id, as_json)


def cancel_command(
    workflow_id: WorkflowIdArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Recorded with the cancellation.")
    ] = "cancelled by user",
    as_json: JsonFlag = False,
) -> None:
    """Cancel a saga: it retracts what it stored, records ExtractionCompensated, then ends Cancelled."""
    _run(lambda _, client: cancel_extraction(client, workflow_id, reason=reason))
    _done("cancel", workflow_id, as_json)


def _done(action: str, workflow_id: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"workflow_id": workflow_id, "sent": action}))
    else:
        console.print(f"sent [bold]{action}[/] to {workflow_id}")


def _print_fields(fields: dict[str, Any]) -> None:
    width = max(map(len, fields), default=0) + 2
    for name, value in fields.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        # soft_wrap: URLs and ids stay whole (copy-paste), however narrow the terminal.
        console.print(f"[bold]{name.ljust(width)}[/]{shown}", soft_wrap=True, highlight=False)


def register_saga_commands(app: typer.Typer) -> None:
    """Attach the saga commands to the main app."""
    app.command("worker")(exits_at_once(worker_command))
    app.command("extract")(exits_at_once(extract_command))
    app.command("status")(exits_at_once(status_command))
    app.command("approve")(exits_at_once(approve_command))
    app.command("reject")(exits_at_once(reject_command))
    app.command("cancel")(exits_at_once(cancel_command))
