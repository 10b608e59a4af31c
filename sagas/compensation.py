"""Reusable saga machinery for Temporal workflows: compensations registered before each
step and run last-in-first-out when the saga fails, is rejected or is cancelled.

Usage inside a workflow::

    saga = Saga(record_failure=record_compensation_failed)
    saga.add_compensation(Compensation("book", Acts.cancel_booking, lambda ctx: CancelInput(...)))
    booking = await saga.step("book", lambda: workflow.execute_activity(Acts.book, ...))
    ...
    await saga.run(body)   # compensates on cancellation or a step's permanent failure

Rules (see docs/sagas.md):

* A compensation is registered *before* its step runs, because a step can take effect and
  then time out; a compensation of a step that never took effect must be a no-op.
* Compensations are activities with their own retry policy. They run shielded from the
  workflow's cancellation: a cancelled saga still undoes what it did.
* A compensation that still fails after its retries is recorded (``record_failure``) and
  the saga fails loudly with :class:`CompensationFailedError`; it never swallows the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

T = TypeVar("T")

COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=10,
)
"""Default retries of a compensation: about four minutes before it counts as failed."""


@dataclass(frozen=True)
class CompensationContext:
    """What a compensation's input is built from, at the time the saga compensates."""

    reason: str
    failed_step: str | None
    results: Mapping[str, Any]
    """Results of the compensations that already ran, by step (LIFO: later steps first)."""


@dataclass(frozen=True)
class Compensation:
    """How to undo one step: an activity, and its input built when compensating."""

    step: str
    activity: Callable[..., Awaitable[Any]] | str
    build_input: Callable[[CompensationContext], Any]
    retry_policy: RetryPolicy = field(default_factory=lambda: COMPENSATION_RETRY)
    start_to_close_timeout: timedelta = timedelta(seconds=30)
    schedule_to_close_timeout: timedelta | None = None
    """All attempts together (``None``: bounded by ``retry_policy`` alone)."""


class CompensationRunner(Protocol):
    """Runs one compensation activity (the Temporal one by default; a fake in unit tests)."""

    async def __call__(self, compensation: Compensation, arg: Any) -> Any: ...


FailureRecorder = Callable[[str, str, CompensationContext], Awaitable[None]]
"""``record_failure(step, error, context)``: persists that a compensation failed."""


async def run_compensation_activity(compensation: Compensation, arg: Any) -> Any:
    """Run ``compensation`` as a Temporal activity with its own retry policy."""
    return await workflow.execute_activity(
        compensation.activity,
        arg,
        start_to_close_timeout=compensation.start_to_close_timeout,
        schedule_to_close_timeout=compensation.schedule_to_close_timeout,
        retry_policy=compensation.retry_policy,
        summary=f"compensate {compensation.step}",
    )


def _cancellation_reason() -> str | None:
    return workflow.cancellation_reason()


class CompensationFailedError(ApplicationError):
    """A compensation failed even after its retries: the saga is only partly undone."""

    def __init__(self, step: str, error: str) -> None:
        super().__init__(
            f"compensation of step {step!r} failed after its retries ({error}); the saga is only partly "
            "undone: fix the cause, then undo the rest by hand (see CompensationFailed in the event store)",
            step,
            error,
            type=CompensationFailedError.__name__,
            non_retryable=True,
        )


class StepFailedError(ApplicationError):
    """A saga step failed permanently; its compensations have run."""

    def __init__(self, step: str, error: str) -> None:
        super().__init__(
            f"step {step!r} failed permanently and the saga was compensated: {error}",
            step,
            type=StepFailedError.__name__,
            non_retryable=True,
        )


def describe_failure(error: BaseException) -> str:
    """A one-line reason for a step's failure, including the root cause's message."""
    parts = [str(error) or type(error).__name__]
    cause = getattr(error, "cause", None) or error.__cause__
    while cause is not None:
        part = str(cause) or type(cause).__name__
        if not any(part in earlier for earlier in parts):  # wrappers repeat their cause's message
            parts.append(part)
        cause = getattr(cause, "cause", None) or cause.__cause__
    return ": ".join(parts)


@dataclass
class Saga:
    """Compensations of one workflow run, kept LIFO; one ``compensate`` per run."""

    record_failure: FailureRecorder | None = None
    runner: CompensationRunner = run_compensation_activity
    cancellation_reason: Callable[[], str | None] = _cancellation_reason
    """``None`` until a cancellation is requested, then its reason (maybe empty)."""
    current_step: str | None = None
    compensations: list[Compensation] = field(default_factory=list)
    compensated: bool = False

    def add_compensation(self, compensation: Compensation) -> None:
        """Register how to undo a step; call it *before* the step runs."""
        self.compensations.append(compensation)

    async def step(self, name: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run one step, remembered as the current step.

        A cancellation requested while the step ran is raised afterwards, even when the step
        (e.g. an activity that ignores cancellation) completed anyway.
        """
        self.current_step = name
        self._raise_if_cancelled()
        result = await action()
        self._raise_if_cancelled()
        return result

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run the saga's steps; compensate on cancellation or a step's permanent failure.

        A cancellation is re-raised after compensating (the run ends Cancelled); a failure is
        raised as :class:`StepFailedError`. Other exceptions (bugs in workflow code) fail the
        workflow task, which Temporal retries until the code is fixed: nothing is undone.
        """
        try:
            return await body()
        except BaseException as error:
            if is_cancelled_exception(error):
                reason = self.cancellation_reason()
                await self.compensate(f"cancelled: {reason}" if reason else "cancelled", self.current_step)
                raise
            if isinstance(error, FailureError) and not isinstance(error, CompensationFailedError):
                reason = describe_failure(error)
                await self.compensate(f"step {self.current_step} failed: {reason}", self.current_step)
                raise StepFailedError(self.current_step or "?", reason) from error
            raise

    async def compensate(self, reason: str, failed_step: str | None) -> dict[str, Any]:
        """Run every registered compensation, newest first; their results by step.

        :raises CompensationFailedError: a compensation failed after its retries (recorded first).
        """
        if self.compensated:
            return {}
        self.compensated = True
        results: dict[str, Any] = {}
        for compensation in reversed(self.compensations):
            context = CompensationContext(reason=reason, failed_step=failed_step, results=dict(results))
            try:
                arg = compensation.build_input(context)
                results[compensation.step] = await _shielded(self.runner(compensation, arg))
            except Exception as error:
                message = describe_failure(error)
                if self.record_failure is not None:
                    await _shielded(self.record_failure(compensation.step, message, context))
                raise CompensationFailedError(compensation.step, message) from error
        return results

    def _raise_if_cancelled(self) -> None:
        if self.cancellation_reason() is not None:
            raise asyncio.CancelledError("cancellation requested")


async def _shielded(awaitable: Awaitable[T]) -> T:
    """Await to the end even if the surrounding task is cancelled meanwhile.

    A compensation must finish: cancelling its activity would leave the saga half undone.
    """
    task = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
