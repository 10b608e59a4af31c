"""What a benchmark run produces: figures, each a measurement beside its baseline, and a ratio.

A :class:`Figure` always compares memsaga (``subject``) with one reference (``baseline``:
the plain-library way, or a peer library) measured in the same run on the same services.
``ratio`` is always ``subject / baseline``: for a throughput (higher is better) a ratio
above 1 means memsaga is faster; for a latency or a duration (lower is better) a ratio
above 1 means memsaga is slower.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

TargetKind = Literal["ratio_at_least", "ratio_above", "value_below", "value_at_least"]


class Measurement(BaseModel):
    """One side of a figure: the median of its rounds, every round's value, peak memory."""

    label: str
    value: float
    samples: list[float]
    peak_memory_mb: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(
        cls, label: str, samples: list[float], peak_memory_mb: dict[str, float] | None = None
    ) -> Measurement:
        """The median of ``samples``. :raises ValueError: no samples."""
        if not samples:
            raise ValueError(f"{label}: no samples were measured")
        return cls(
            label=label,
            value=statistics.median(samples),
            samples=samples,
            peak_memory_mb=peak_memory_mb or {},
        )


class Target(BaseModel):
    """What the figure must reach: a minimum ratio (or one strictly above, for "better than"),
    or a bound on the subject's value (below a maximum, or at least a minimum).

    ``applies`` is False when the run's sizes differ from those the target is stated for
    (e.g. "rebuild of 1,000,000 events under 60 s" checked on a quick run): then it is not judged.
    """

    kind: TargetKind
    threshold: float
    text: str
    applies: bool = True

    def judge(self, value: float, ratio: float) -> bool | None:
        """True when met, False when missed, None when it does not apply to this run."""
        if not self.applies:
            return None
        if self.kind == "ratio_at_least":
            return ratio >= self.threshold
        if self.kind == "ratio_above":
            return ratio > self.threshold
        if self.kind == "value_at_least":
            return value >= self.threshold
        return value < self.threshold


class Figure(BaseModel):
    """memsaga beside one baseline, with their ratio and, when there is one, the target."""

    key: str
    benchmark: str
    title: str
    unit: str
    higher_is_better: bool
    subject: Measurement
    baseline: Measurement
    ratio: float
    target: Target | None = None
    passed: bool | None = None
    size: str = ""
    notes: list[str] = Field(default_factory=list)
    delivered: float | None = None
    """Events the follower delivered ÷ events committed, the furthest from 1 over the rounds,
    where memsaga's side follows the log (tail, relay, rebuild); anything but 1.0 fails the figure."""

    @classmethod
    def compare(
        cls,
        key: str,
        *,
        benchmark: str,
        title: str,
        unit: str,
        subject: Measurement,
        baseline: Measurement,
        higher_is_better: bool = True,
        target: Target | None = None,
        size: str = "",
        notes: list[str] | None = None,
        delivered: float | None = None,
    ) -> Figure:
        """A figure with its ratio computed and its target judged (a lost or doubled event fails it)."""
        ratio = subject.value / baseline.value if baseline.value else float("inf")
        passed = None if target is None else target.judge(subject.value, ratio)
        notes = list(notes or [])
        if delivered is not None and delivered != 1.0:
            passed = False
            notes.append(f"delivered/committed was {delivered:.6f}, not 1.0: events were lost or doubled")
        return cls(
            key=key,
            benchmark=benchmark,
            title=title,
            unit=unit,
            higher_is_better=higher_is_better,
            subject=subject,
            baseline=baseline,
            ratio=ratio,
            target=target,
            passed=passed,
            size=size,
            notes=notes,
            delivered=delivered,
        )


class Machine(BaseModel):
    """Where the run happened."""

    cpus: int
    memory_gb: float
    python: str
    platform: str
    load_average_at_start: tuple[float, float, float]
    postgres: str = ""
    nats: str = ""
    temporal: str = ""
    tracing: str = ""  # the OpenTelemetry tracer provider in force (the CLI installs the SDK's)


class BenchResults(BaseModel):
    """A whole run: when, where, at which sizes, and every figure."""

    started_at: datetime
    finished_at: datetime | None = None
    load_average_at_end: tuple[float, float, float] | None = None  # others' work during the run shows here
    quick: bool
    machine: Machine
    sizes: dict[str, int | float]
    figures: list[Figure] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def missed(self) -> list[Figure]:
        """Figures whose target applies and was missed."""
        return [f for f in self.figures if f.passed is False]
