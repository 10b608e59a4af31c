"""Determinism guard: saved histories must replay on the current workflow code.

A failure here means a change to ``workflows/memory_extraction.py`` alters the commands of
runs already in flight: guard the change with ``workflow.patched(...)`` (docs/sagas.md),
and only then regenerate the histories with ``tests/workflows/record_histories.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from memsaga.client import sealing_converter
from memsaga.settings import Settings
from tests.workflows.record_histories import MANIFEST, SHAPES, record_histories
from tests.workflows.support import HISTORIES, SagaEnv
from workflows.memory_extraction import MemoryExtraction


def load(directory: Path, shape: str) -> WorkflowHistory:
    """The saved history of ``shape``, with the workflow id the manifest gives it."""
    ids: dict[str, str] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    return WorkflowHistory.from_json(ids[shape], (directory / f"{shape}.json").read_text(encoding="utf-8"))


async def load_all(directory: Path) -> AsyncIterator[WorkflowHistory]:
    for shape in SHAPES:
        yield load(directory, shape)


def replayer(settings: Settings | None = None) -> Replayer:
    """Replays committed histories (plain payloads); with ``settings``, also histories whose
    payloads a memsaga client sealed (its converter opens them, and passes plain ones through)."""
    converter = pydantic_data_converter if settings is None else sealing_converter(settings)
    return Replayer(workflows=[MemoryExtraction], data_converter=converter)


RELEASED = (HISTORIES, HISTORIES / "before_reconcile")
"""Histories of today's workflow, and of each earlier one still guarded by ``workflow.patched``
(never delete a directory here while runs of that code may be in flight)."""


@pytest.mark.parametrize("directory", RELEASED, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES)
async def test_saved_history_replays_on_the_current_workflow(directory: Path, shape: str) -> None:
    result = await replayer().replay_workflow(load(directory, shape), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{directory.name}/{shape}: {result.replay_failure}"


async def test_the_recorder_writes_histories_that_replay(saga_env: SagaEnv, tmp_path: Path) -> None:
    written = await record_histories(saga_env, tmp_path)

    assert sorted(p.stem for p in written) == sorted(SHAPES)
    results = await replayer(saga_env.settings).replay_workflows(
        load_all(tmp_path), raise_on_replay_failure=False
    )
    assert results.replay_failures == {}
