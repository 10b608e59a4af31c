"""Temporal workflows of memsaga (orchestration only: every effect is an activity)."""

from workflows.forget_user import ForgetUser
from workflows.memory_extraction import MemoryExtraction

WORKFLOWS = [MemoryExtraction, ForgetUser]
"""Every workflow a memsaga worker runs."""

__all__ = ["WORKFLOWS", "ForgetUser", "MemoryExtraction"]
