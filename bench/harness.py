"""Timing, percentiles, interleaved rounds, and peak memory of the processes involved."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import psutil

MB = 1024 * 1024


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by linear interpolation between closest ranks.

    :raises ValueError: no values.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Deliveries:
    """Events a follower of the log delivered against events committed, round by round."""

    ratios: list[float] = field(default_factory=list)

    def record(self, delivered: int, committed: int) -> None:
        self.ratios.append(delivered / committed if committed else 1.0)

    @property
    def worst(self) -> float | None:
        """The ratio furthest from 1.0 (None before any round)."""
        return max(self.ratios, key=lambda r: abs(r - 1.0), default=None)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (monotonic, high resolution)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def rate(count: int, seconds: float) -> float:
    """Items per second. :raises ValueError: when nothing was timed."""
    if seconds <= 0:
        raise ValueError("a rate needs a positive duration")
    return count / seconds


Side = Callable[[int], Awaitable[float]]
"""One side of a comparison: given the round number, run it once and return its figure."""


async def interleaved(
    rounds: int, sides: Mapping[str, Side], on_round: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Run every side once per round, rotating who goes first, so drift hits all sides alike."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(await sides[name](r))
            if on_round is not None:
                on_round()
    return samples


class Progress(Protocol):
    """Where benchmarks report progress (a rich progress bar, or nothing)."""

    def start(self, description: str, total: float) -> None:
        """Begin a new bar of ``total`` steps."""
        ...

    def advance(self, steps: float = 1) -> None:
        """Move the current bar forward."""
        ...


class NoProgress:
    """Reports nothing (``--json`` and tests)."""

    def start(self, description: str, total: float) -> None:
        """Ignore."""

    def advance(self, steps: float = 1) -> None:
        """Ignore."""


# --- Peak memory ----------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _proportional_bytes(process: psutil.Process) -> int:
    """PSS where the kernel gives it (shared buffers split among sharers), else RSS."""
    try:
        info = process.memory_full_info()
        return int(getattr(info, "pss", info.rss))
    except psutil.AccessDenied:
        return int(process.memory_info().rss)


def tree_memory(pid: int) -> int:
    """Bytes held by a process and its descendants (sum of PSS), 0 when it is gone."""
    total = 0
    for process in _tree(pid):
        try:
            total += _proportional_bytes(process)
        except psutil.Error:
            continue  # exited between listing and reading
    return total


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP ``port``, when it can be seen."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


@dataclass
class MemorySampler:
    """Samples the memory of named process trees on a thread; keeps each tree's peak (MB).

    The bench process itself is always sampled as ``bench``; services running on this
    machine (found by :mod:`bench.context`) are added by name. Remote ones are not seen.
    """

    processes: dict[str, int] = field(default_factory=dict)
    interval: float = 0.25
    peaks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        for name, pid in {"bench": os.getpid(), **self.processes}.items():
            mb = tree_memory(pid) / MB
            if mb > self.peaks.get(name, 0.0):
                self.peaks[name] = round(mb, 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        """Sample while the block runs (and once at each end); ``peaks`` holds the result."""
        self.peaks = {}
        self._stop.clear()
        thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._sample()


def merge_peaks(into: dict[str, float], peaks: Mapping[str, float]) -> dict[str, float]:
    """Keep the larger peak of each process."""
    for name, mb in peaks.items():
        into[name] = max(into.get(name, 0.0), mb)
    return into
