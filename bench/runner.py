"""Runs the selected benchmarks in one process, on one set of services, into one result."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from pydantic import SecretStr

from bench import appends, encryption, end_to_end, point_in_time, projections, recall, relay, replay, sagas
from bench.context import BenchContext, Sizes
from bench.harness import NoProgress, Progress
from bench.results_model import BenchResults, Figure
from eventstore.keys import MasterKey
from memsaga.errors import ServiceNotConfigured
from memsaga.settings import Settings

Benchmark = Callable[[BenchContext], Awaitable[list[Figure]]]

BENCHMARKS: dict[str, Benchmark] = {
    "appends": appends.run,
    "replay": replay.run,
    "relay": relay.run,
    "projections": projections.run,
    "end_to_end": end_to_end.run,
    "sagas": sagas.run,
    "recall": recall.run,
    "point-in-time": point_in_time.run,
    "encryption": encryption.run,
}
"""Every benchmark, in the order a full run takes them (store-only ones first)."""


class UnknownBenchmark(ValueError):
    """A name given to ``--only`` is not a benchmark."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no benchmark named {name!r}: choose among {', '.join(BENCHMARKS)}")


def select(only: Sequence[str] | None) -> list[str]:
    """The benchmarks to run, in run order. :raises UnknownBenchmark: a name is not one."""
    for name in only or ():
        if name not in BENCHMARKS:
            raise UnknownBenchmark(name)
    return [name for name in BENCHMARKS if not only or name in only]


def _nats_warnings(version: str) -> list[str]:
    parts = version.split(".")
    if (
        len(parts) >= 2
        and parts[0].isdigit()
        and parts[1].isdigit()
        and (int(parts[0]), int(parts[1])) < (2, 10)
    ):
        return [
            f"NATS {version} predates 2.10: consumers ignore filter_subjects, so projection runners "
            "receive every event type (memsaga pins nats-server 2.15)"
        ]
    return []


async def run_benchmarks(
    settings: Settings,
    sizes: Sizes,
    *,
    only: Sequence[str] | None = None,
    quick: bool = False,
    progress: Progress | None = None,
) -> BenchResults:
    """Run the selected benchmarks; a failing one is recorded in ``errors`` and the rest go on.

    :raises UnknownBenchmark: ``only`` names something else.
    :raises ServiceNotConfigured: no PostgreSQL is configured (every benchmark needs one).
    """
    names = select(only)
    ctx = BenchContext(settings=_resolved(settings), sizes=sizes, progress=progress or NoProgress())
    ctx.settings.require_database_url()
    await ctx.locate_services()
    machine = await ctx.machine()
    results = BenchResults(
        started_at=datetime.now(UTC), quick=quick, machine=machine, sizes=sizes.as_dict(),
        warnings=_nats_warnings(machine.nats),
    )  # fmt: skip
    try:
        for name in names:
            try:
                results.figures += await BENCHMARKS[name](ctx)
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                results.errors[name] = f"{type(exc).__name__}: {exc}"
    finally:
        await ctx.close()
    results.finished_at = datetime.now(UTC)
    load = os.getloadavg()
    results.load_average_at_end = (round(load[0], 2), round(load[1], 2), round(load[2], 2))
    return results


def _resolved(settings: Settings) -> Settings:
    """Settings with every service URL filled in from the local stack where it is known."""
    update: dict[str, str] = {}
    for field, require in (
        ("database_url", settings.require_database_url),
        ("nats_url", settings.require_nats_url),
        ("temporal_address", settings.require_temporal_address),
    ):
        try:
            update[field] = require()
        except ServiceNotConfigured:
            continue  # the benchmarks needing it report that they cannot run
    keys: dict[str, object] = {}
    if settings.master_key_source() == (None, None):  # benchmarks' users are made up: any key will do
        keys["master_key"] = SecretStr(MasterKey.generate().text())
    return settings.model_copy(update={**update, **keys})
