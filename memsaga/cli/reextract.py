"""``memsaga reextract``: run stored episodes again through another extractor or embedder."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from adapters.errors import AdapterNotConfigured, UnknownAdapter
from memsaga.cli.common import ExitCode, JsonFlag, console, exits_at_once, fail, fail_with, run_command
from memsaga.client import connect, reextract, reextraction_request
from memsaga.settings import Settings
from sagas.reextraction import ReextractionProgress, ReextractionRequest


def _run(request: ReextractionRequest, settings: Settings, as_json: bool) -> ReextractionProgress:
    async def main() -> ReextractionProgress:
        client = await connect(settings)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeRemainingColumn(), console=console, disable=as_json) as bar:
            task = bar.add_task(f"re-extract {request.request_id}", total=None)

            def report(p: ReextractionProgress) -> None:
                bar.update(task, completed=p.done, total=p.total)

            return await reextract(client, request, settings=settings, progress=report)

    return run_command(main)


def reextract_command(
    user: Annotated[str | None, typer.Option("--user", help="Re-extract this user's episodes.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Re-extract every user's episodes.")] = False,
    extractor: Annotated[
        str | None, typer.Option("--extractor", help="rules | http (default: MEMSAGA_EXTRACTOR).")
    ] = None,
    embedder: Annotated[
        str | None, typer.Option("--embedder", help="wordllama | hashing | http (default: MEMSAGA_EMBEDDER).")
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option("--id", help="The request's key (random when omitted); the same key resumes it."),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who asks (recorded in the event).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run every completed episode of a user (or of all users) again with other adapters.

    Memories the new extractor no longer finds are retracted with a reason, new ones created,
    the rest left untouched; retracted memories stay retracted. docs/evolution.md.
    """
    if (user is None) == (not every):
        raise fail("give exactly one of --user USER or --all", code=ExitCode.USAGE)
    settings = Settings()
    try:
        request = reextraction_request(
            settings,
            user_id=user,
            extractor=extractor,
            embedder=embedder,
            request_id=request_id,
            requested_by=by,
        )
    except UnknownAdapter as exc:  # a command-line value, not a setting: bad input
        raise fail(str(exc), error=type(exc).__name__, code=ExitCode.USAGE) from None
    except (AdapterNotConfigured, ValueError) as exc:
        raise fail_with(exc) from None
    _reextract(request, settings, as_json)


@exits_at_once  # bad input above is refused before a Temporal client exists (and testable in-process)
def _reextract(request: ReextractionRequest, settings: Settings, as_json: bool) -> None:
    if not as_json:
        console.print(
            f"request {request.request_id} (re-run with --id {request.request_id} to resume)", highlight=False
        )
    done = _run(request, settings, as_json)
    if as_json:
        typer.echo(json.dumps(done.model_dump()))
        return
    scope = f"user {done.user_id}" if done.user_id else "every user"
    console.print(
        f"re-extracted {done.done} of {done.total or 0} episodes of {scope}"
        f" with {done.extractor} / {done.embedder}\n"
        f"  memories    {done.created} created, {done.retired} retired, {done.unchanged} unchanged,"
        f" {done.kept_retracted} kept retracted\n"
        f"  candidates  {done.duplicates} duplicates, {done.conflicts} conflicts,"
        f" {done.held_sensitive} held for review\n"
        f"  episodes    {done.skipped_forgotten} skipped (forgotten), {done.already} done before,"
        f" {len(done.failed)} failed",
        highlight=False,
    )
    if done.failed:
        raise fail(f"{len(done.failed)} episode sagas failed: {', '.join(done.failed)}")
    if done.embedder != settings.embedder:
        console.print(
            f"note: searches of {scope} now use {done.embedder}; new sagas still embed with"
            f" MEMSAGA_EMBEDDER={settings.embedder}, whose vectors those searches do not compare:"
            f" set MEMSAGA_EMBEDDER={done.embedder} for the workers (docs/evolution.md)",
            highlight=False,
        )


def register_reextract_commands(app: typer.Typer) -> None:
    """Attach ``reextract`` to the main app."""
    app.command("reextract")(reextract_command)
