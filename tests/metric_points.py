"""Reading what an ``InMemoryMetricReader`` collected: sums, gauges and histograms by attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader


def _points(reader: InMemoryMetricReader, name: str, attributes: dict[str, Any]) -> list[Any]:
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += [
                        p
                        for p in metric.data.data_points
                        if attributes.items() <= dict(p.attributes or {}).items()
                    ]
    return found


def total(reader: InMemoryMetricReader, name: str, **attributes: Any) -> float:
    """A counter's value, summed over the points whose attributes include ``attributes``."""
    return float(sum(p.value for p in _points(reader, name, attributes)))


def gauge(reader: InMemoryMetricReader, name: str, **attributes: Any) -> float | None:
    """A gauge's last value for ``attributes`` (None: never set)."""
    points = _points(reader, name, attributes)
    return None if not points else float(max(points, key=lambda p: p.time_unix_nano).value)


def histogram(reader: InMemoryMetricReader, name: str, **attributes: Any) -> tuple[int, float, float]:
    """A histogram's count, sum and max over the points whose attributes include ``attributes``."""
    points: list[HistogramDataPoint] = _points(reader, name, attributes)
    if not points:
        return 0, 0.0, 0.0
    return sum(p.count for p in points), float(sum(p.sum for p in points)), float(max(p.max for p in points))
