"""A failed request retried under its id: a new run whose events never collide with the first's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from eventstore import sha256_hex
from memsaga.client import (
    ExtractionFailed,
    SagaNotFound,
    SagaNotRetryable,
    cancel_extraction,
    extraction_outcome,
    extraction_result,
    retry_extraction,
    start_extraction,
)
from sagas.memory_extraction.domain import ExtractionRequest
from tests.workflows.support import EPISODE, SagaEnv, request, types


def memsaga(env: SagaEnv, *args: str) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    variables |= {
        "MEMSAGA_TEMPORAL_ADDRESS": env.settings.require_temporal_address(),
        "MEMSAGA_DATABASE_URL": env.settings.require_database_url(),
        "MEMSAGA_TASK_QUEUE": env.settings.task_queue,
        "MEMSAGA_STATE_DIR": str(env.settings.state_dir),
        "MEMSAGA_MASTER_KEY": os.environ["MEMSAGA_MASTER_KEY"],
    }
    argv = [sys.executable, "-m", "memsaga", *args]
    return subprocess.run(argv, env=variables, capture_output=True, text=True, timeout=60)


async def test_a_failed_request_is_retried_under_its_id(saga_env: SagaEnv) -> None:
    data = EPISODE.encode("utf-8")
    by_hash = ExtractionRequest.model_validate(
        {**request().model_dump(), "text": None, "text_sha256": sha256_hex(data)}  # not stored yet
    )
    key = uuid.uuid4().hex
    first = await saga_env.start(by_hash, key)
    assert isinstance(await extraction_outcome(saga_env.client, first.workflow_id), ExtractionFailed)
    await saga_env.blobs.put(data)  # the cause is fixed

    again = await retry_extraction(saga_env.client, first.workflow_id, settings=saga_env.settings)

    assert again.workflow_id == f"{first.workflow_id}-r2" and again.correlation_id == again.workflow_id
    result = await extraction_result(saga_env.client, again.workflow_id)
    assert result.outcome == "completed" and len(result.memory_ids) == 3
    before, after = await saga_env.events(first), await saga_env.events(again)
    assert types(before) == ["ExtractionRequested", "ExtractionCompensated"]  # the first run stays as it was
    assert types(after)[0] == "ExtractionRequested" and types(after)[-1] == "ExtractionCompleted"
    assert not {e.event_id for e in before} & {e.event_id for e in after}
    # a plain re-submission is still idempotent, and answers with the newest attempt
    resubmitted = await start_extraction(
        saga_env.client, by_hash, workflow_id=key, settings=saga_env.settings
    )
    assert (resubmitted.workflow_id, resubmitted.run_id) == (again.workflow_id, again.run_id)
    with pytest.raises(SagaNotRetryable, match="completed"):
        await retry_extraction(saga_env.client, key, settings=saga_env.settings)

    refused = memsaga(saga_env, "retry", first.workflow_id, "--json")
    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout)["error"] == "SagaNotRetryable"


async def test_a_running_saga_or_an_unknown_id_is_not_retried(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(review=True))
    await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)

    with pytest.raises(SagaNotRetryable, match="running"):
        await retry_extraction(saga_env.client, handle.workflow_id, settings=saga_env.settings)
    with pytest.raises(SagaNotFound):
        await retry_extraction(saga_env.client, f"extract-{uuid.uuid4().hex}", settings=saga_env.settings)
    unknown = memsaga(saga_env, "retry", f"extract-{uuid.uuid4().hex}")
    assert unknown.returncode == 5 and "Traceback" not in unknown.stderr
    await cancel_extraction(saga_env.client, handle.workflow_id)
