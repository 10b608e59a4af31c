"""Showing a run: progress bars while it runs, then a table, a JSON file and a PNG chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBars
from rich.table import Table

from bench.results_model import BenchResults, Figure


class RichProgress:
    """One progress bar per step of the run (rich, on stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        self.bars = RichBars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self.bars.stop()

    def _finish(self) -> None:
        if self._task is not None:
            total = self.bars.tasks[self._task].total
            self.bars.update(self._task, completed=total)

    def start(self, description: str, total: float) -> None:
        """A new bar (the previous one is shown complete)."""
        self._finish()
        self._task = self.bars.add_task(description, total=total)

    def advance(self, steps: float = 1) -> None:
        """Move the current bar forward."""
        if self._task is not None:
            self.bars.advance(self._task, steps)


def _value(value: float, unit: str) -> str:
    if not unit:  # a score or a fraction (recall, MRR)
        return f"{value:.3f}"
    if unit == "ms" or unit == "s" or value < 100:
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def _status(figure: Figure) -> str:
    if figure.target is None:
        return "[dim]info[/]"
    if figure.passed is None:
        return "[yellow]n/a[/]"
    return "[green]pass[/]" if figure.passed else "[bold red]MISS[/]"


def _delivered(figure: Figure) -> str:
    if figure.delivered is None:
        return ""
    return "1.0" if figure.delivered == 1.0 else f"[bold red]{figure.delivered:.6f}[/]"


def table(results: BenchResults) -> Table:
    """Every figure: memsaga, its baseline, the ratio, the target and whether it was met."""
    kind = "quick run (smoke check, not a measurement to quote)" if results.quick else "full run"
    view = Table(title=f"memsaga bench: {kind}", title_justify="left", caption="ratio = memsaga / baseline")
    view.add_column("figure", overflow="fold")
    view.add_column("memsaga", justify="right")
    view.add_column("baseline", justify="right")
    view.add_column("ratio", justify="right")
    view.add_column("target")
    view.add_column("")
    view.add_column("delivered", justify="right")  # events delivered / committed, where it follows the log
    for f in results.figures:
        view.add_row(
            f.key,
            _value(f.subject.value, f.unit),
            _value(f.baseline.value, f.unit),
            f"{f.ratio:.2f}x",
            f.target.text if f.target else "",
            _status(f),
            _delivered(f),
        )
    return view


def memory_table(results: BenchResults) -> Table | None:
    """Peak memory (PSS, MB) of each process while each side ran, where it was sampled."""
    rows = [(f, m) for f in results.figures for m in (f.subject, f.baseline) if m.peak_memory_mb]
    if not rows:
        return None
    processes = sorted({p for _, m in rows for p in m.peak_memory_mb})
    view = Table(title="peak memory (PSS, MB)", title_justify="left")
    for column in ("figure", "side", *processes):
        view.add_column(column, justify="left" if column in ("figure", "side") else "right")
    seen: set[tuple[str, str]] = set()
    for figure, side in rows:
        key = (side.label, repr(sorted(side.peak_memory_mb.items())))
        if key in seen:  # figures of one measurement share its peaks
            continue
        seen.add(key)
        view.add_row(figure.key, side.label, *(f"{side.peak_memory_mb.get(p, 0):,.0f}" for p in processes))
    return view


def show(results: BenchResults, console: Console) -> None:
    """Print the tables, warnings and errors."""
    console.print(table(results))
    memory = memory_table(results)
    if memory is not None:
        console.print(memory)
    m = results.machine
    console.print(
        f"[dim]{m.cpus} CPUs, {m.memory_gb} GB; PostgreSQL {m.postgres}, NATS {m.nats}; tracing {m.tracing}; "
        f"load average {m.load_average_at_start} at start, {results.load_average_at_end} at end[/]"
    )
    for warning in results.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for name, error in results.errors.items():
        console.print(f"[bold red]{name} failed:[/] {error}")


def write_json(results: BenchResults, directory: Path) -> Path:
    """``bench-<UTC time>.json`` in ``directory``, and the same as ``latest.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = results.model_dump_json(indent=2)
    path = directory / f"bench-{results.started_at:%Y%m%dT%H%M%SZ}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def relative(figure: Figure) -> float:
    """How many times better than its baseline memsaga did (ratio, or its inverse for latencies)."""
    if figure.higher_is_better:
        return figure.ratio
    return 1 / figure.ratio if figure.ratio else float("inf")


def write_chart(results: BenchResults, directory: Path) -> Path:
    """A bar per figure: memsaga relative to its baseline (right of 1 = better), ratio targets marked."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = list(reversed(results.figures))
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(figures) + 1.6))
    colours = ["#2e7d32" if f.passed else "#c62828" if f.passed is False else "#78909c" for f in figures]
    ax.barh([f.key for f in figures], [relative(f) for f in figures], color=colours)
    for y, f in enumerate(figures):
        if f.target is not None and f.target.kind == "ratio_at_least":
            ax.plot([f.target.threshold] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(relative(f), y, f"  {_value(f.subject.value, f.unit)}", va="center", fontsize=7)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("memsaga relative to its baseline (log scale; > 1 is better; black tick: target)")
    kind = "quick run" if results.quick else "full run"
    ax.set_title(f"memsaga bench, {kind}, {results.started_at:%Y-%m-%d %H:%M} UTC")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path = directory / f"bench-{results.started_at:%Y%m%dT%H%M%SZ}.png"
    fig.savefig(path, dpi=110)
    fig.savefig(directory / "latest.png", dpi=110)
    plt.close(fig)
    return path
