"""``memsaga search``: recall a user's memories by meaning and by words."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated

import typer
from rich.markup import escape

from memsaga.cli.common import JsonFlag, console, run_command
from memsaga.search import KINDS, MAX_K, Recall, SearchResult, check_search
from memsaga.settings import Settings
from projections import SearchMode
from projections.memories import parse_moment


def search_command(
    query: Annotated[str, typer.Argument(help='The question, e.g. "where does the user live?".')],
    user: Annotated[str, typer.Option("--user", "-u", help="Whose memories (always one user's).")],
    k: Annotated[int, typer.Option("--k", "-k", help=f"How many hits (1 to {MAX_K}).")] = 10,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help=f"Only memories of this kind (repeatable): {', '.join(KINDS)}."),
    ] = None,
    valid_at: Annotated[
        str | None,
        typer.Option(
            "--valid-at",
            help="Memories true in the world at this ISO time, e.g. 2026-05-01T00:00Z or 2026-05-01"
            " (a date is midnight UTC)"
            " (superseded and invalidated ones too; without it, current ones only).",
        ),
    ] = None,
    after_position: Annotated[
        int | None,
        typer.Option(
            "--after-position",
            min=0,
            help="First wait until the search read model has applied this position (an extraction's"
            " last_position): read-your-writes.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for --after-position.")
    ] = 10.0,
    mode: Annotated[
        SearchMode, typer.Option("--mode", help="hybrid (both rankings fused), vector or keyword alone.")
    ] = SearchMode.HYBRID,
    as_json: JsonFlag = False,
) -> None:
    """The memories of one user that best answer a question, best first."""

    async def main() -> SearchResult:
        at = parse_moment(valid_at, option="--valid-at") if valid_at is not None else None
        check_search(query, user_id=user, k=k, kinds=kind or ())  # before connecting to anything
        async with Recall.open(Settings()) as recall:
            return await recall.search(
                query,
                user_id=user,
                k=k,
                kinds=kind or (),
                valid_at=at,
                mode=mode,
                after_position=after_position,
                timeout=timeout,
            )

    result = run_command(main)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json")))
        return
    if not result.hits:
        console.print(f"no memories of {user} match {result.query!r}")
        return
    for rank, hit in enumerate(result.hits, 1):
        created = hit.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        ended = f", {hit.status}" if hit.status != "current" else ""
        console.print(
            f"[bold]{rank}. {escape(hit.text)}[/]  ({hit.kind}{ended}, score {hit.score:.4f})",
            highlight=False,
        )
        console.print(
            f"   memory {hit.memory_id}  created {created}", style="dim", highlight=False, soft_wrap=True
        )
        if hit.workflow_id:
            saga = hit.workflow_url or hit.workflow_id
            console.print(f"   saga {saga}", style="dim", highlight=False, soft_wrap=True)
    console.print(f"{result.mode} search with {result.embedder}", style="dim")


def register_search_commands(app: typer.Typer) -> None:
    """Attach ``search`` to the main app."""
    app.command("search")(search_command)
