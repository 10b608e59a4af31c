"""A chaos saga whose start fails for good is recorded as such in the ledger, never lost in a
task nobody awaits (the soak met this: a start that met PostgreSQL restarting)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from eventstore.keys import MasterKey
from memsaga.chaos import workload
from memsaga.chaos.checks import Findings, check_requests
from memsaga.chaos.ledger import Ledger
from memsaga.settings import Settings


async def test_a_start_that_fails_is_named_in_the_ledger_and_the_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError("refused for this test")

    monkeypatch.setattr(workload, "start_extraction", refuse)
    ledger = Ledger()
    [saga] = workload.plan_sagas(1, random.Random(1), "t")
    ledger.planned(saga)
    settings = Settings(master_key=MasterKey.generate().text())
    await workload.start_saga(None, settings, saga, ledger, asyncio.Event())  # type: ignore[arg-type]

    assert saga.start_error == "ValueError: refused for this test" and saga.started_at is None
    findings = Findings()
    check_requests(ledger, findings)
    assert any("its start failed: ValueError" in v.message for v in findings.violations)
