"""The one place where an activity's errors become Temporal failures.

Every activity is declared with :func:`activity_defn` instead of ``activity.defn``, so what
it raises leaves through :func:`to_application_error`:

* errors no retry can fix (:data:`PERMANENT_ERRORS`: the event store's bad-input and conflict
  errors, ``BlobNotFound``, pydantic's ``ValidationError``, ``CandidateNotInEpisode``, and
  adapter errors that say so) become non-retryable ``ApplicationError``\\ s whose type is the
  error's class name, so the step fails at once and the saga compensates;
* adapter errors that say retrying may help become retryable ``ApplicationError``\\ s;
* anything else (connection errors, timeouts, bugs) propagates untouched and Temporal retries
  it under the step's retry policy.

The workflow therefore names no error: its retry policies list no non-retryable types.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from eventstore.errors import (
    BlobNotFound,
    EventIdConflict,
    InvalidEvent,
    InvalidPayload,
    PartialDuplicate,
    PayloadTooLarge,
    UnknownEventType,
    WrongExpectedVersion,
)
from sagas.memory_extraction.domain import CandidateNotInEpisode
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
    ValidationError,
    CandidateNotInEpisode,
)
"""Errors no retry of a saga step can fix: the step fails at once."""


def to_application_error(error: Exception, *, compensation: bool = False) -> ApplicationError | None:
    """The failure ``error`` becomes, or ``None`` when it should propagate as it is (transient).

    The ``ApplicationError`` stands in for ``error``: same message, traceback and cause, and its
    class name as type. In a compensation nothing is final (``compensation=True``): it keeps
    retrying under its own policy, because a re-read stream may let it through.
    """
    if isinstance(error, AdapterError):
        retryable = error.retryable
    elif isinstance(error, PERMANENT_ERRORS):
        retryable = False
    else:
        return None
    translated = ApplicationError(
        str(error), type=type(error).__name__, non_retryable=not (retryable or compensation)
    )
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
