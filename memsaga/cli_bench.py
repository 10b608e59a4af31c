"""``memsaga bench``: memsaga beside its baselines, in one run on the same services."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from memsaga.cli_store import JsonFlag, fail
from memsaga.errors import MemsagaError
from memsaga.settings import Settings

RESULTS_DIR = Path("bench/results")


def bench_command(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Small sizes: seconds in all, a smoke check (CI), not figures to quote."
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Run only this benchmark (repeatable): appends, replay, relay, "
            "projections, end_to_end, sagas.",
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option("--events", min=8, help="Events in the replay/rebuild data set (default 1,000,000)."),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, help="Rounds per append setup (median reported).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where the JSON and PNG go.")] = RESULTS_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Measure appends, replay, relay, projections, end-to-end latency and sagas beside their baselines.

    Uses the services of the settings (MEMSAGA_DATABASE_URL, MEMSAGA_NATS_URL,
    MEMSAGA_TEMPORAL_ADDRESS) or of the local stack (``memsaga dev up``); each benchmark
    works in a database of its own, created and dropped again, and in its own NATS streams.
    """
    # Imported here: matplotlib and the benchmarks would slow every other command's start.
    from bench.context import Sizes
    from bench.report import RichProgress, show, write_chart, write_json
    from bench.runner import UnknownBenchmark, run_benchmarks

    sizes = Sizes.quick() if quick else Sizes()
    if events is not None:
        sizes = sizes.with_events(events)
    if rounds is not None:
        sizes = replace(sizes, rounds=rounds)
    console = Console()
    try:
        with RichProgress(Console(stderr=True, quiet=as_json)) as progress:
            results = asyncio.run(
                run_benchmarks(Settings(), sizes, only=only, quick=quick, progress=progress)
            )
    except (UnknownBenchmark, MemsagaError) as exc:
        raise fail(str(exc)) from exc
    json_path = write_json(results, out)
    chart_path = write_chart(results, out)
    if as_json:
        console.print_json(results.model_dump_json())
    else:
        show(results, console)
        console.print(f"results: {json_path}  chart: {chart_path}")
    if results.errors:
        raise typer.Exit(code=1)


def register_bench_commands(app: typer.Typer) -> None:
    """Add ``bench`` to the CLI."""
    app.command("bench")(bench_command)
