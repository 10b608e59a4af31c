"""The retry budgets are settings, checked like the others, and travel in each saga's options."""

from __future__ import annotations

import pytest

from memsaga.client import extraction_options
from memsaga.errors import InvalidSettings
from memsaga.settings import Settings, load_settings


def test_new_sagas_carry_the_configured_budgets() -> None:
    settings = Settings(step_schedule_to_close_seconds=7200, adapter_retry_seconds=45)

    retry = extraction_options(settings).retry

    assert (retry.schedule_to_close_seconds, retry.adapter_retry_seconds) == (7200, 45)


def test_the_defaults_are_hours_for_outages_and_minutes_for_adapters() -> None:
    retry = extraction_options(Settings()).retry

    assert retry.schedule_to_close_seconds >= 3600 and 60 <= retry.adapter_retry_seconds <= 3600


@pytest.mark.parametrize(
    "variable", ["MEMSAGA_STEP_SCHEDULE_TO_CLOSE_SECONDS", "MEMSAGA_ADAPTER_RETRY_SECONDS"]
)
def test_a_budget_that_is_not_positive_is_named(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "0")

    with pytest.raises(InvalidSettings, match=f"{variable}='0'"):
        load_settings()
