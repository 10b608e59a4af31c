"""A failure's one-line reason names each cause once, however many wrappers repeat its message."""

from __future__ import annotations

from sagas.compensation import describe_failure


def chain(*messages: str) -> BaseException:
    """An exception whose cause chain carries ``messages``, outermost first."""
    error: BaseException | None = None
    for message in reversed(messages):
        outer = RuntimeError(message)
        outer.__cause__ = error
        error = outer
    assert error is not None
    return error


def test_a_message_repeated_down_the_chain_is_said_once() -> None:
    repeated = "cannot connect to PostgreSQL at postgresql://x: refused"
    assert describe_failure(chain("step store failed", repeated, repeated, repeated)) == (
        f"step store failed: {repeated}"
    )
    wrapped = chain("step store failed", f"ApplicationError: {repeated}", repeated)
    assert describe_failure(wrapped) == f"step store failed: ApplicationError: {repeated}"


def test_distinct_causes_are_all_kept_in_order() -> None:
    assert describe_failure(chain("step embed failed", "activity failed", "HTTP 503")) == (
        "step embed failed: activity failed: HTTP 503"
    )
