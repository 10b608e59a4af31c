"""The activity boundary's error mapping (activities/errors.py): permanent errors become
non-retryable ``ApplicationError``s named after their class, transient ones pass untouched."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PERMANENT_ERRORS, activity_defn, to_application_error
from activities.memory_extraction import MemoryExtractionActivities
from adapters.errors import UnknownAdapter
from adapters.http_embedder import EmbedderResponseInvalid, EmbedderUnavailable
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
from sagas.memory_extraction.domain import CandidateNotInEpisode


class _Model(BaseModel):
    count: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"count": "many"})
    except ValidationError as error:
        return error
    raise AssertionError("the model accepted a bad count")


PERMANENT: list[Exception] = [
    WrongExpectedVersion("episode-e", 3, 4),
    EventIdConflict("e-1", "payload"),
    PartialDuplicate(1, 2),
    UnknownEventType("Nope", 1, []),
    InvalidPayload("MemoryCreated", 1, [("text", "missing")]),
    InvalidEvent("empty batch"),
    PayloadTooLarge("EpisodeRecorded", 2_000_000, 1_000_000),
    BlobNotFound("0" * 64),
    DataErased("blob 00"),
    UserWasForgotten("u-1"),
    _validation_error(),
    CandidateNotInEpisode("c-1", "e"),
    UnknownAdapter("extractor", "llama", ("rules", "http")),
    EmbedderResponseInvalid("no data[0].embedding"),
    EmbedderUnavailable("http://embedder/v1", "HTTP 400", retryable=False, status=400),
]
TRANSIENT: list[Exception] = [
    ConnectionRefusedError("connection refused"),
    OSError("network unreachable"),
    TimeoutError("timed out"),
    RuntimeError("a bug: retried like a transient"),
]


def test_every_permanent_error_class_is_covered() -> None:
    assert {type(e) for e in PERMANENT} >= set(PERMANENT_ERRORS)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_a_permanent_error_becomes_a_non_retryable_application_error(error: Exception) -> None:
    failure = to_application_error(error)

    assert isinstance(failure, ApplicationError)
    assert (failure.type, failure.non_retryable, failure.message) == (type(error).__name__, True, str(error))


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_transient_error_is_not_translated(error: Exception) -> None:
    assert to_application_error(error) is None


def test_an_adapter_error_that_may_pass_on_a_retry_stays_retryable() -> None:
    error = EmbedderUnavailable("http://embedder/v1", "HTTP 503", retryable=True, status=503)

    failure = to_application_error(error)

    assert failure is not None and (failure.type, failure.non_retryable) == ("EmbedderUnavailable", False)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_in_a_compensation_nothing_is_final(error: Exception) -> None:
    failure = to_application_error(error, compensation=True)

    assert failure is not None and (failure.type, failure.non_retryable) == (type(error).__name__, False)


def test_the_application_error_keeps_the_cause_and_traceback_of_the_error() -> None:
    try:
        try:
            raise KeyError("blob")
        except KeyError as missing:
            raise BlobNotFound("0" * 64) from missing
    except BlobNotFound as error:
        failure = to_application_error(error)
        traceback = error.__traceback__

    assert failure is not None and isinstance(failure.__cause__, KeyError)
    assert failure.__traceback__ is traceback


@activity_defn("test.fails")
async def fails(kind: str) -> None:
    if kind == "permanent":
        raise WrongExpectedVersion("episode-e", 1, 2)
    raise ConnectionResetError("the database went away")


async def test_an_activity_raises_the_translated_error() -> None:
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(fails, "permanent")

    assert (caught.value.type, caught.value.non_retryable) == ("WrongExpectedVersion", True)
    assert "expected 1" in caught.value.message


async def test_an_activity_lets_a_transient_error_through() -> None:
    with pytest.raises(ConnectionResetError):
        await ActivityEnvironment().run(fails, "transient")


def test_every_saga_activity_goes_through_the_mapping() -> None:
    acts = MemoryExtractionActivities(None, None, None, None, None)  # type: ignore[arg-type]

    for fn in acts.all():
        assert getattr(fn, "__wrapped__", None) is not None, fn
