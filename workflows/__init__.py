"""Temporal workflows of memsaga (orchestration only: every effect is an activity)."""

from workflows.forget_user import ForgetUser
from workflows.memory_extraction import MemoryExtraction
from workflows.reextraction import EpisodeReextraction, Reextraction

WORKFLOWS = [MemoryExtraction, ForgetUser, Reextraction, EpisodeReextraction]
"""Every workflow a memsaga worker runs."""

__all__ = ["WORKFLOWS", "EpisodeReextraction", "ForgetUser", "MemoryExtraction", "Reextraction"]
