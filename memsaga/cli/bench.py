"""``memsaga bench``: memsaga beside its baselines, in one run on the same services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memsaga.cli.common import ExitCode, JsonFlag, fail, fail_with
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
            "projections, end_to_end, sagas, recall, point-in-time.",
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option("--events", min=8, help="Events in the replay/rebuild data set (default 1,000,000)."),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, help="Rounds per append setup (median reported).")
    ] = None,
    e2e_rate: Annotated[
        float | None,
        typer.Option(
            "--e2e-rate",
            min=1.0,
            help="Events/s appended steadily by the end-to-end benchmark (default 1,000).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where the JSON and PNG go.")] = RESULTS_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Measure appends, replay, relay, projections, end-to-end latency and sagas beside their baselines.

    Uses the services of the settings (MEMSAGA_DATABASE_URL, MEMSAGA_NATS_URL,
    MEMSAGA_TEMPORAL_ADDRESS) or of the local stack (``memsaga dev up``); each benchmark
    works in a database of its own, created and dropped again, and in its own NATS streams.
    """
    try:
        from bench.cli import BenchOptions, UnknownBenchmark, run_bench
    except ModuleNotFoundError as exc:
        raise fail(missing_benchmarks(exc), error="BenchmarksMissing", code=ExitCode.CONFIG) from None
    options = BenchOptions(
        quick=quick, only=only, events=events, rounds=rounds, e2e_rate=e2e_rate, out=out, as_json=as_json
    )
    try:
        code = run_bench(options, Settings())
    except (UnknownBenchmark, MemsagaError) as exc:
        raise fail_with(exc) from exc
    if code:
        raise typer.Exit(code=code)


def missing_benchmarks(exc: ModuleNotFoundError) -> str:
    """What to do when the benchmarks (a checkout's ``bench/``) or their extra are not installed."""
    if exc.name is not None and (exc.name == "bench" or exc.name.startswith("bench.")):
        return (
            "memsaga bench needs the benchmarks (the bench/ package), which this installation does not "
            "have: run it from a source checkout (`make venv`, then `.venv/bin/memsaga bench`), or "
            "install memsaga from its source tree with `pip install '.[bench]'`"
        )
    return f"memsaga bench needs the bench extra ({exc.name} is not installed): pip install 'memsaga[bench]'"


def register_bench_commands(app: typer.Typer) -> None:
    """Add ``bench`` to the CLI."""
    app.command("bench")(bench_command)
