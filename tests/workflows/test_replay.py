"""Determinism guard: saved histories must replay on the current workflow code.

A failure here means a change to a workflow (``workflows/memory_extraction.py``,
``workflows/forget_user.py``) alters the commands of runs already in flight: guard the change
with ``workflow.patched(...)`` (docs/evolution.md, Changing a workflow), and only then record the
new path's history with ``tests/workflows/record_histories.py --only SHAPE``.
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
from tests.workflows.changed_workflows import ForgetUserReordered
from tests.workflows.record_histories import MANIFEST, SHAPES, record_histories
from tests.workflows.support import HISTORIES, SagaEnv
from workflows import WORKFLOWS


def manifest(directory: Path) -> dict[str, str]:
    """``{shape: workflow id}`` of the histories saved in ``directory``."""
    ids: dict[str, str] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    return ids


def load(directory: Path, shape: str) -> WorkflowHistory:
    """The saved history of ``shape``, with the workflow id the manifest gives it."""
    text = (directory / f"{shape}.json").read_text(encoding="utf-8")
    return WorkflowHistory.from_json(manifest(directory)[shape], text)


async def load_all(
    directory: Path, *, leave_out: frozenset[str] = frozenset()
) -> AsyncIterator[WorkflowHistory]:
    for shape in manifest(directory):
        if shape not in leave_out:
            yield load(directory, shape)


def replayer(settings: Settings | None = None) -> Replayer:
    """Replays committed histories (plain payloads); with ``settings``, also histories whose
    payloads a memsaga client sealed (its converter opens them, and passes plain ones through)."""
    converter = pydantic_data_converter if settings is None else sealing_converter(settings)
    return Replayer(workflows=WORKFLOWS, data_converter=converter)


def replay_problem(name: str, failure: BaseException) -> str:
    """What a replay failure means, and what to do about it."""
    return (
        f"{name} no longer replays on the current workflow code: {failure}\n"
        "A run in flight would fail the same way. Keep the old commands for old runs behind"
        ' `if workflow.patched("<change-id>"):` (new code) `else:` (old code), see docs/evolution.md,'
        " Changing a workflow; never edit or delete a saved history to make this pass."
    )


RELEASED = (HISTORIES, HISTORIES / "before_reconcile")
"""Histories of today's workflows, and of each earlier one still guarded by ``workflow.patched``
(never delete a directory here while runs of that code may be in flight)."""
SAVED = [(d, shape) for d in RELEASED for shape in manifest(d)]


@pytest.mark.parametrize(("directory", "shape"), SAVED, ids=[f"{d.name}/{s}" for d, s in SAVED])
async def test_saved_history_replays_on_the_current_workflow(directory: Path, shape: str) -> None:
    result = await replayer().replay_workflow(load(directory, shape), raise_on_replay_failure=False)
    assert result.replay_failure is None, replay_problem(f"{directory.name}/{shape}", result.replay_failure)


def test_every_shape_has_a_saved_history() -> None:
    assert sorted(manifest(HISTORIES)) == sorted(SHAPES)
    assert all((HISTORIES / f"{shape}.json").exists() for shape in SHAPES)


async def test_a_changed_workflow_fails_the_replay_and_points_to_patched() -> None:
    reordered = Replayer(workflows=[ForgetUserReordered], data_converter=pydantic_data_converter)

    result = await reordered.replay_workflow(load(HISTORIES, "forgotten"), raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
    assert "workflow.patched" in replay_problem("forgotten", result.replay_failure)


async def test_the_recorder_writes_histories_that_replay(saga_env: SagaEnv, tmp_path: Path) -> None:
    written = await record_histories(saga_env, tmp_path)

    assert sorted(p.stem for p in written) == sorted(SHAPES)
    # This client seals each saga's payloads with its user's key, which forgetting destroys: the
    # history of a forgotten user's saga can be replayed by nobody, by design (docs/privacy.md).
    # The committed one was recorded with plain payloads (record_histories.py) and replays above.
    results = await replayer(saga_env.settings).replay_workflows(
        load_all(tmp_path, leave_out=frozenset({"cancelled_by_forget"})), raise_on_replay_failure=False
    )
    assert results.replay_failures == {}
