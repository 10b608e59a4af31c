"""What ``memsaga bench`` runs: the sizes its options ask for, the run, and its table, JSON and chart.

memsaga's command line parses the options and imports this module only when the command runs
(matplotlib and the benchmarks would slow every other command's start), so that an
installation without the benchmarks or their extra can say so instead of failing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from bench.context import Sizes
from bench.report import RichProgress, show, write_chart, write_json
from bench.runner import UnknownBenchmark, run_benchmarks
from memsaga.settings import Settings

__all__ = ["BenchOptions", "UnknownBenchmark", "run_bench"]


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """The options of ``memsaga bench``."""

    quick: bool
    only: list[str] | None
    events: int | None
    rounds: int | None
    e2e_rate: float | None = None
    out: Path
    as_json: bool


def sizes_for(options: BenchOptions) -> Sizes:
    """The data-set sizes: quick or full, then ``--events`` and ``--rounds``."""
    sizes = Sizes.quick() if options.quick else Sizes()
    if options.events is not None:
        sizes = sizes.with_events(options.events)
    if options.rounds is not None:
        sizes = replace(sizes, rounds=options.rounds)
    if options.e2e_rate is not None:
        sizes = replace(sizes, e2e_rate=options.e2e_rate)
    return sizes


def run_bench(options: BenchOptions, settings: Settings) -> int:
    """Run, show and write the results; the exit code (1 when a benchmark failed).

    :raises UnknownBenchmark: ``--only`` names something else.
    :raises MemsagaError: no PostgreSQL is configured.
    """
    console = Console()
    with RichProgress(Console(stderr=True, quiet=options.as_json)) as progress:
        results = asyncio.run(
            run_benchmarks(
                settings, sizes_for(options), only=options.only, quick=options.quick, progress=progress
            )
        )
    json_path = write_json(results, options.out)
    chart_path = write_chart(results, options.out)
    if options.as_json:
        console.print_json(results.model_dump_json())
    else:
        show(results, console)
        console.print(f"results: {json_path}  chart: {chart_path}")
    return 1 if results.errors else 0
