"""The one place where an activity's errors become Temporal failures.

Every activity is declared with :func:`activity_defn` instead of ``activity.defn``, so what
it raises leaves through :func:`to_application_error`:

* errors no retry can fix (:data:`PERMANENT_ERRORS`: the event store's bad-input and conflict
  errors, ``BlobNotFound``, pydantic's ``ValidationError``, ``CandidateNotInEpisode``, and
  adapter errors that say so) become non-retryable ``ApplicationError``\\ s whose type is the
  error's class name, so the step fails at once and the saga compensates;
* adapter errors that say retrying may help become retryable ``ApplicationError``\\ s;
* anything else (connection errors, timeouts, bugs) propagates untouched and Temporal retries
  it under the step's retry policy: with backoff, for as long as the step's schedule-to-close
  allows (hours by default), so that an outage of PostgreSQL, NATS or Temporal never fails a saga.

Two budgets are kept here, by the activity, because only it knows what failed:
:func:`adapter_call` gives up on an adapter's retryable errors once the step's attempts or its
time budget (``StepRetry.adapter_retry_seconds``) are spent, and a compensation gives up on a
permanent error after :data:`COMPENSATION_PERMANENT_ATTEMPTS` attempts.

The workflow therefore names no error: its retry policies list no non-retryable types.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from eventstore.errors import (
    BlobNotFound,
    DataErased,
    EventIdConflict,
    InvalidEvent,
    InvalidPayload,
    PartialDuplicate,
    PayloadTooLarge,
    UnknownEventType,
    UserWasForgotten,
    WrongExpectedVersion,
)
from sagas.memory_extraction.domain import CandidateNotInEpisode, StepRetry
from sagas.memory_extraction.ports import AdapterError

P = ParamSpec("P")
R = TypeVar("R")

PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    WrongExpectedVersion,
    EventIdConflict,
    PartialDuplicate,
    UnknownEventType,
    InvalidPayload,
    InvalidEvent,
    PayloadTooLarge,
    BlobNotFound,
    DataErased,
    UserWasForgotten,
    ValidationError,
    CandidateNotInEpisode,
)
"""Errors no retry of a saga step can fix: the step fails at once."""

COMPENSATION_PERMANENT_ATTEMPTS = 10
"""Attempts of a compensation meeting a permanent error (a re-read stream may let it through)."""


def _attempt() -> int:
    """The current activity's attempt (1 outside an activity, e.g. in unit tests)."""
    return activity.info().attempt if activity.in_activity() else 1


def adapter_budget_spent(retry: StepRetry) -> str | None:
    """Why an adapter's retryable error must now fail the step (attempts or time spent), or None."""
    if not activity.in_activity():
        return None
    info = activity.info()
    elapsed = (datetime.now(UTC) - info.scheduled_time).total_seconds()
    if info.attempt >= retry.maximum_attempts:
        return f"gave up after {info.attempt} attempts in {elapsed:.0f} s"
    if info.attempt > 1 and elapsed >= retry.adapter_retry_seconds:  # a first attempt always gets a retry
        return f"gave up after {elapsed:.0f} s (adapter retry budget {retry.adapter_retry_seconds:g} s)"
    return None


async def adapter_call(retry: StepRetry, call: Awaitable[R]) -> R:
    """Await an extractor's or embedder's ``call``; once ``retry``'s adapter budget is spent, its
    retryable error fails the step (non-retryable) instead of being retried again."""
    try:
        return await call
    except AdapterError as error:
        spent = adapter_budget_spent(retry) if error.retryable else None
        if spent is None:
            raise
        failure = ApplicationError(f"{error} ({spent})", type=type(error).__name__, non_retryable=True)
        raise failure.with_traceback(error.__traceback__) from error.__cause__


def to_application_error(error: Exception, *, compensation: bool = False) -> ApplicationError | None:
    """The failure ``error`` becomes, or ``None`` when it should propagate as it is (transient).

    The ``ApplicationError`` stands in for ``error``: same message, traceback and cause, and its
    class name as type. In a compensation (``compensation=True``) a permanent error is retried
    up to :data:`COMPENSATION_PERMANENT_ATTEMPTS` attempts, because a re-read stream may let it
    through; transient errors are retried under its policy (hours).
    """
    if isinstance(error, AdapterError):
        retryable = error.retryable
    elif isinstance(error, PERMANENT_ERRORS):
        retryable = False
    else:
        return None
    if compensation:
        retryable = retryable or _attempt() < COMPENSATION_PERMANENT_ATTEMPTS
    translated = ApplicationError(str(error), type=type(error).__name__, non_retryable=not retryable)
    translated.__cause__ = error.__cause__
    return translated.with_traceback(error.__traceback__)


def translating_errors(
    fn: Callable[P, Awaitable[R]], *, compensation: bool = False
) -> Callable[P, Awaitable[R]]:
    """``fn`` with its errors passed through :func:`to_application_error`."""

    @functools.wraps(fn)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Exception as error:
            failure = to_application_error(error, compensation=compensation)
            if failure is None:
                raise
            raise failure from error.__cause__

    return translated


def activity_defn(
    name: str, *, compensation: bool = False
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """``activity.defn(name=name)`` over :func:`translating_errors`: declare every activity with it.

    :param compensation: the activity undoes a step; its errors stay retryable.
    """

    def declare(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        declared: Callable[P, Awaitable[R]] = activity.defn(name=name)(
            translating_errors(fn, compensation=compensation)
        )
        return declared

    return declare
