"""Benchmark 7: recall, its quality on the retrieval fixture and its speed at scale (issue 13).

:mod:`bench.recall_quality` scores each search mode on ``tests/fixtures/recall.json``;
:mod:`bench.recall_speed` times ``search()`` beside exact brute force on synthetic data sets.
"""

from __future__ import annotations

from bench import recall_quality, recall_speed
from bench.context import BenchContext
from bench.results_model import Figure


async def run(ctx: BenchContext) -> list[Figure]:
    """Quality first (seconds), then speed (minutes at full sizes)."""
    return [*await recall_quality.run(ctx), *await recall_speed.run(ctx)]
