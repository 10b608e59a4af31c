"""Temporal workflows of memsaga (orchestration only: every effect is an activity)."""

from workflows.memory_extraction import MemoryExtraction

WORKFLOWS = [MemoryExtraction]
"""Every workflow a memsaga worker runs."""

__all__ = ["WORKFLOWS", "MemoryExtraction"]
