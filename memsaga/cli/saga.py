"""``memsaga worker | extract | status | approve | reject | cancel | retry``: run and steer sagas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from memsaga.bootstrap import build_stores, check_adapters, create_pool
from memsaga.cli.common import (
    ExitCode,
    JsonFlag,
    console,
    errors,
    exits_at_once,
    fail,
    fail_with,
    signal_stop,
)
from memsaga.client import (
    ExtractionFailed,
    approve_extraction,
    cancel_extraction,
    candidate_texts,
    connect,
    extraction_options,
    extraction_outcome,
    extraction_status,
    reject_extraction,
    retry_extraction,
    start_extraction_of_text,
    workflow_id_for,
)
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from memsaga.worker import run_worker
from sagas.memory_extraction.domain import (
    ExtractionRequest,
    ExtractionResult,
    ExtractionStatus,
    InvalidExtractionRequest,
    request_problems,
)
from sagas.memory_extraction.identifiers import identifier_problem
from sagas.memory_extraction.ports import AdapterError

T = TypeVar("T")


def _workflow_id(value: str) -> str:
    """The workflow id as given; one memsaga could never have started is refused (exit 2)."""
    if problem := identifier_problem(value, "WORKFLOW_ID"):
        raise fail(problem, error="InvalidIdentifier", code=ExitCode.USAGE)
    return value


WorkflowIdArg = Annotated[
    str, typer.Argument(help="The saga's workflow id (extract-…).", callback=_workflow_id)
]
ReviewerOption = Annotated[
    str | None, typer.Option("--reviewer", help="Who decides (recorded in the event).")
]
OnlyOption = Annotated[
    list[str] | None,
    typer.Option("--only", help="Decide only this candidate (repeat for more; ids from `memsaga status`)."),
]


def _run(make: Callable[[Settings, Client], Awaitable[T]]) -> T:
    """Connect, run, and turn connection and saga errors into messages that say what to do."""

    async def main() -> T:
        settings = Settings()
        return await make(settings, await connect(settings))

    try:
        return asyncio.run(main())
    except typer.Exit:  # an error already said (typer's Exit is a RuntimeError: not a connect failure)
        raise
    except (MemsagaError, InvalidExtractionRequest, AdapterError) as exc:
        raise fail_with(exc) from None
    except RPCError as exc:
        code = ExitCode.NOT_FOUND if exc.status == RPCStatusCode.NOT_FOUND else ExitCode.ERROR
        raise fail(f"Temporal refused: {exc}", error="RPCError", code=code) from None
    except RuntimeError as exc:  # temporalio's "failed client connect"
        message = f"{exc}: is Temporal running? start it with `memsaga dev up`"
        raise fail(message, error="TemporalUnreachable", code=ExitCode.UNAVAILABLE) from None


def worker_command() -> None:
    """Run workflows and activities on the task queue until SIGTERM or Ctrl-C (waits for its services)."""
    from memsaga.cli.common import log_to_stderr  # here: keeps this edit apart from the imports above

    log_to_stderr()
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
        raise fail_with(exc) from None
    except RuntimeError as exc:
        message = f"{exc}: are Temporal and PostgreSQL running? (`memsaga dev up`)"
        raise fail(message, error="ServiceUnreachable", code=ExitCode.UNAVAILABLE) from None
    print("memsaga worker stopped")


def extract_command(
    user: Annotated[str, typer.Option("--user", help="Whose memories these are.")],
    words: Annotated[
        str | None,
        typer.Argument(metavar="[TEXT]", help="The episode's text (as --text).", show_default=False),
    ] = None,
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
    if words is not None and text is not None:
        raise fail("give the episode's text once: as TEXT or with --text", code=ExitCode.USAGE)
    episode = _episode_text(text if words is None else words, file)

    settings = Settings()
    try:  # before connecting or recording anything: a misconfigured saga would only fail
        check_adapters(settings)
    except AdapterError as exc:
        raise fail_with(exc) from None
    request = ExtractionRequest(
        user_id=user,
        text=episode,
        source=source,
        correlation_id=correlation_id,
        options=extraction_options(settings, review=review),
    )
    problems = request_problems(request) + _id_problems(user, key, correlation_id)
    if problems:  # bad input is refused here, not by a saga that would record it and fail
        raise fail("; ".join(problems), error="InvalidExtractionRequest", code=ExitCode.USAGE)

    async def start(settings: Settings, client: Client) -> dict[str, Any]:
        handle = await start_extraction_of_text(client, request, settings=settings, workflow_id=key)
        return handle.model_dump()

    _start_and_show(start, wait=wait, as_json=as_json)


def _id_problems(user: str, key: str | None, correlation_id: str | None) -> list[str]:
    found = (
        identifier_problem(user, "--user"),
        None if key is None else identifier_problem(workflow_id_for(key), "--id"),
        None if correlation_id is None else identifier_problem(correlation_id, "--correlation-id"),
    )
    return [problem for problem in found if problem is not None]


def _start_and_show(
    begin: Callable[[Settings, Client], Awaitable[dict[str, Any]]], *, wait: bool, as_json: bool
) -> None:
    """Start a saga with ``begin`` (its handle's fields, ``workflow_id`` among them) and print
    its ids at once; with ``wait``, its outcome too (exit 1 unless completed or rejected)."""

    async def start(settings: Settings, client: Client) -> dict[str, Any]:
        shown = await begin(settings, client)
        if not as_json:
            _print_fields(shown)  # the ids first: `approve`, `status` and `trace` need them
        if wait:
            outcome = await _waiting(client, settings, shown["workflow_id"], quiet=as_json)
            shown["result"] = outcome.model_dump()
        return shown

    shown = _run(start)
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
    elif "result" in shown:
        _print_fields(shown["result"])
    if wait and shown["result"]["outcome"] not in ("completed", "rejected"):
        raise typer.Exit(code=1)


async def _waiting(
    client: Client, settings: Settings, workflow_id: str, *, quiet: bool
) -> ExtractionResult | ExtractionFailed:
    """The saga's outcome; meanwhile (unless ``quiet``) a spinner says which step it is at and,
    when it waits for a human, how to answer."""
    outcome = asyncio.ensure_future(extraction_outcome(client, workflow_id))
    if quiet:
        return await outcome
    said, shown = "", False
    with errors.status(f"waiting for {workflow_id}") as spinner:
        while not outcome.done():
            with contextlib.suppress(RPCError, RuntimeError):  # no worker polls yet: keep waiting
                status = await extraction_status(client, workflow_id)
                if status.waiting_for_review:
                    if not shown:  # what the reviewer decides on, once
                        _print_review(errors, status, await _texts(settings, status))
                        shown = True
                    say = (
                        f"waiting for a review: `memsaga approve {workflow_id}` or"
                        f" `memsaga reject {workflow_id}` (add --only ID to decide one candidate)"
                    )
                else:
                    say = f"{workflow_id}: step {status.step}"
                spinner.update(say)
                if not errors.is_terminal and say != said:
                    errors.print(say, highlight=False, soft_wrap=True)  # a log has no spinner: once each
                said = say
            await asyncio.wait([outcome], timeout=1.0)
    return await outcome


async def _texts(settings: Settings, status: ExtractionStatus) -> dict[str, str]:
    """The texts of the saga's candidates, from the event store; empty when it cannot be read."""
    try:
        pool = await create_pool(settings, min_size=1, max_size=1)
    except MemsagaError:
        return {}
    try:
        store, _ = build_stores(pool, settings)
        return await candidate_texts(store, status.episode_id)
    finally:
        await pool.close()


def _print_review(out: Console, status: ExtractionStatus, texts: dict[str, str]) -> None:
    """One line per candidate under review, never wrapped (ids and texts stay whole to copy)."""
    out.print(f"candidates under review ({len(status.review)}):", highlight=False)
    for item in status.review:
        slot = f" slot {item.slot}" + (" (ended)" if item.polarity == "ended" else "") if item.slot else ""
        text = texts.get(item.candidate_id, "(text in the event store)")
        out.print(
            f"  {item.candidate_id}  {item.decision:<8}  {item.kind}{slot}  {item.reason}: {text}",
            soft_wrap=True,
            highlight=False,
        )


def _episode_text(text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise fail("give exactly one of TEXT (or --text) and --file", code=ExitCode.USAGE)
    if file is None:
        assert text is not None
        return text
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"cannot read {file}: no such file", code=ExitCode.NOT_FOUND) from None
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc}", code=ExitCode.USAGE) from None
    except UnicodeDecodeError as exc:
        raise fail(
            f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}): convert it first,"
            f" e.g. `iconv -f latin1 -t utf-8 {file}`",
            code=ExitCode.USAGE,
        ) from None


def status_command(workflow_id: WorkflowIdArg, as_json: JsonFlag = False) -> None:
    """Show the saga's step, counts and, when it waits for a review, each candidate under review."""

    async def query(settings: Settings, client: Client) -> tuple[ExtractionStatus, dict[str, str]]:
        status = await extraction_status(client, workflow_id)
        return status, (await _texts(settings, status) if status.review else {})

    status, texts = _run(query)
    if as_json:
        shown = status.model_dump()
        for item in shown["review"]:
            item["text"] = texts.get(item["candidate_id"])
        typer.echo(json.dumps(shown, indent=2))
        return
    _print_fields(status.model_dump(exclude={"review"}))
    if status.review:
        _print_review(console, status, texts)
        if status.waiting_for_review:
            console.print(
                f"decide with `memsaga approve {workflow_id} [--only ID …]`"
                f" or `memsaga reject {workflow_id} [--only ID …]`",
                soft_wrap=True,
                highlight=False,
            )


def approve_command(
    workflow_id: WorkflowIdArg,
    reviewer: ReviewerOption = None,
    note: Annotated[str | None, typer.Option("--note", help="Why it is fine.")] = None,
    only: OnlyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve the candidates a saga waits on (all, or those of --only): it stores them."""

    async def send(settings: Settings, client: Client) -> None:
        await _check_only(client, workflow_id, only)
        await approve_extraction(client, workflow_id, reviewer=reviewer, note=note, candidate_ids=only)

    _run(send)
    _done("approve", workflow_id, as_json, only)


def reject_command(
    workflow_id: WorkflowIdArg,
    reviewer: ReviewerOption = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why not (recorded in the event).")] = None,
    only: OnlyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject candidates a saga waits on: with --only they are not stored; without, the saga compensates."""

    async def send(settings: Settings, client: Client) -> None:
        await _check_only(client, workflow_id, only)
        await reject_extraction(client, workflow_id, reviewer=reviewer, reason=reason, candidate_ids=only)

    _run(send)
    _done("reject", workflow_id, as_json, only)


async def _check_only(client: Client, workflow_id: str, only: list[str] | None) -> None:
    """Refuse ids that are not candidates under review (a typo would otherwise decide nothing)."""
    if not only:
        return
    status = await extraction_status(client, workflow_id)
    known = {item.candidate_id for item in status.review}
    unknown = [c for c in only if c not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none (the saga waits for no review)"
        raise fail(
            f"not a candidate under review: {', '.join(unknown)}; candidates under review: {listed}",
            code=ExitCode.NOT_FOUND,
        )


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


def retry_command(
    workflow_id: WorkflowIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the new run finishes.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a failed, cancelled, rejected or compensated request again (new run extract-KEY-r2, …)."""

    async def start(settings: Settings, client: Client) -> dict[str, Any]:
        handle = await retry_extraction(client, workflow_id, settings=settings)
        return {"retry_of": workflow_id, **handle.model_dump()}

    _start_and_show(start, wait=wait, as_json=as_json)


def _done(action: str, workflow_id: str, as_json: bool, only: list[str] | None = None) -> None:
    if as_json:
        typer.echo(json.dumps({"workflow_id": workflow_id, "sent": action, "candidate_ids": only or None}))
    else:
        which = f" for {', '.join(only)}" if only else ""
        console.print(f"sent [bold]{action}[/]{which} to {workflow_id}")


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
    app.command("retry")(exits_at_once(retry_command))
