"""The reusable saga machinery (sagas/compensation.py), driven by a fake activity runner."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from sagas.compensation import (
    Compensation,
    CompensationContext,
    CompensationFailedError,
    Saga,
    StepFailedError,
    describe_failure,
)


class FakeRunner:
    """Runs compensations in-process: records each call, fails the steps it is told to."""

    def __init__(self, *, failing: set[str] | None = None, gate: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failing = failing or set()
        self.gate = gate

    async def __call__(self, compensation: Compensation, arg: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        self.calls.append((compensation.step, arg))
        if compensation.step in self.failing:
            raise ApplicationError(f"cannot undo {compensation.step}", type="Broken")
        return f"undid {compensation.step}"


class Recorder:
    def __init__(self) -> None:
        self.failures: list[tuple[str, str, str]] = []

    async def __call__(self, step: str, error: str, context: CompensationContext) -> None:
        self.failures.append((step, error, context.reason))


def saga_with(runner: FakeRunner, recorder: Recorder | None = None, *, cancelled: bool = False) -> Saga:
    saga = Saga(
        record_failure=recorder, runner=runner, cancellation_reason=lambda: "user left" if cancelled else None
    )
    for step in ("one", "two", "three"):
        saga.add_compensation(Compensation(step, f"undo_{step}", functools.partial(echo, step)))
    return saga


def echo(step: str, context: CompensationContext) -> tuple[str, CompensationContext]:
    """A compensation's input: its step and the context it was built from."""
    return step, context


def activity_error(cause: BaseException) -> ActivityError:
    error = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="test",
        activity_type="step",
        activity_id="1",
        retry_state=None,
    )
    error.__cause__ = cause
    return error


async def test_compensations_run_newest_first_with_reason_step_and_earlier_results() -> None:
    runner = FakeRunner()
    results = await saga_with(runner).compensate("rejected", "review")

    assert [step for step, _ in runner.calls] == ["three", "two", "one"]
    contexts = [arg[1] for _, arg in runner.calls]
    assert {(c.reason, c.failed_step) for c in contexts} == {("rejected", "review")}
    assert [dict(c.results) for c in contexts] == [
        {},
        {"three": "undid three"},
        {"three": "undid three", "two": "undid two"},
    ]
    assert results == {"three": "undid three", "two": "undid two", "one": "undid one"}


async def test_a_saga_compensates_only_once() -> None:
    runner = FakeRunner()
    saga = saga_with(runner)
    await saga.compensate("first", None)
    assert await saga.compensate("second", None) == {}
    assert len(runner.calls) == 3 and saga.compensated


async def test_a_failing_compensation_is_recorded_and_raised_never_swallowed() -> None:
    runner, recorder = FakeRunner(failing={"two"}), Recorder()
    with pytest.raises(CompensationFailedError) as caught:
        await saga_with(runner, recorder).compensate("cancelled", "store")

    assert caught.value.type == "CompensationFailedError" and caught.value.non_retryable
    assert "'two'" in str(caught.value) and "cannot undo two" in str(caught.value)
    assert recorder.failures == [("two", "Broken: cannot undo two", "cancelled")]
    assert [step for step, _ in runner.calls] == ["three", "two"]  # stops: "one" is not undone blindly


async def test_a_compensation_whose_input_cannot_be_built_counts_as_failed() -> None:
    recorder = Recorder()
    saga = Saga(record_failure=recorder, runner=FakeRunner(), cancellation_reason=lambda: None)
    missing: dict[str, str] = {}
    saga.add_compensation(Compensation("one", "undo", lambda ctx: missing["key"]))
    with pytest.raises(CompensationFailedError):
        await saga.compensate("failed", "one")
    assert [step for step, _, _ in recorder.failures] == ["one"]


async def test_a_permanent_step_failure_compensates_and_fails_the_saga() -> None:
    runner = FakeRunner()
    saga = saga_with(runner)

    async def broken() -> None:
        raise activity_error(ApplicationError("connection refused", type="EmbedderUnavailable"))

    async def body() -> None:
        await saga.step("record", lambda: asyncio.sleep(0))
        await saga.step("embed", broken)

    with pytest.raises(StepFailedError) as caught:
        await saga.run(body)

    assert "connection refused" in str(caught.value) and caught.value.non_retryable
    assert [step for step, _ in runner.calls] == ["three", "two", "one"]
    context = runner.calls[0][1][1]
    assert context.failed_step == "embed" and "connection refused" in context.reason


@pytest.mark.parametrize(
    "cancellation",
    [asyncio.CancelledError(), activity_error(CancelledError("cancelled"))],
    ids=["while-waiting", "while-an-activity-ran"],
)
async def test_cancellation_compensates_then_propagates(cancellation: BaseException) -> None:
    runner = FakeRunner()
    saga = saga_with(runner)

    async def cancelled() -> None:
        raise cancellation

    async def body() -> None:
        await saga.step("review", cancelled)

    with pytest.raises(type(cancellation)):
        await saga.run(body)
    assert [step for step, _ in runner.calls] == ["three", "two", "one"]
    assert runner.calls[0][1][1].reason == "cancelled" and runner.calls[0][1][1].failed_step == "review"


async def test_a_bug_in_workflow_code_is_not_compensated() -> None:
    runner = FakeRunner()
    saga = saga_with(runner)

    async def body() -> None:
        raise TypeError("a bug: Temporal retries the workflow task until the code is fixed")

    with pytest.raises(TypeError):
        await saga.run(body)
    assert runner.calls == [] and not saga.compensated


async def test_a_cancel_that_a_completed_step_swallowed_is_raised_after_the_step() -> None:
    saga = saga_with(FakeRunner(), cancelled=True)

    async def completes() -> str:
        return "done"

    with pytest.raises(asyncio.CancelledError):
        await saga.step("store", completes)
    assert saga.current_step == "store"


async def test_compensations_finish_even_if_the_saga_is_cancelled_meanwhile() -> None:
    gate = asyncio.Event()
    runner = FakeRunner(gate=gate)
    task = asyncio.ensure_future(saga_with(runner).compensate("failed", "store"))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    gate.set()

    assert len(await task) == 3
    assert [step for step, _ in runner.calls] == ["three", "two", "one"]


def test_describe_failure_names_the_root_cause() -> None:
    error = activity_error(ApplicationError("HTTP 503 from the embedder", type="EmbedderUnavailable"))
    assert describe_failure(error) == "activity failed: EmbedderUnavailable: HTTP 503 from the embedder"


async def test_the_reason_of_a_cancellation_is_the_compensation_reason() -> None:
    runner = FakeRunner()
    saga = saga_with(runner, cancelled=True)  # requested with the reason "user left"

    async def never() -> None:
        raise AssertionError("a step does not start once a cancellation is pending")

    with pytest.raises(asyncio.CancelledError):
        await saga.run(lambda: saga.step("extract", never))
    assert {(arg[1].reason, arg[1].failed_step) for _, arg in runner.calls} == {
        ("cancelled: user left", "extract")
    }
