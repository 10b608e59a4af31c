"""Bad search input: each a clear error that says what to change, before anything is searched.

(A query vector of another dimension than the user's vector space is refused once that space is
read: tests/projections/test_reembedding.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from memsaga.search import InvalidSearch, check_search


@pytest.mark.parametrize(
    ("query", "user", "k", "kinds", "message"),
    [
        ("   ", "u-1", 10, (), "the query is empty"),
        ("x" * 2001, "u-1", 10, (), "at most 2,000"),
        ("a\x00b", "u-1", 10, (), "NUL"),
        ("where?", "", 10, (), "needs a user id"),
        ("where?", "u-1", 0, (), "k must be between 1 and 100, not 0"),
        ("where?", "u-1", 101, (), "not 101"),
        ("where?", "u-1", 5, ("health", "hobby"), "unknown kind hobby: choose from preference"),
    ],
)
def test_bad_input_is_named(query: str, user: str, k: int, kinds: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidSearch, match=message):
        check_search(query, user_id=user, k=k, kinds=kinds)


def test_good_input_is_stripped() -> None:
    assert check_search("  where do I live?  ", user_id="u-1", k=10, kinds=("fact",)) == "where do I live?"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "u-1", ""], "the query is empty"),
        (["--user", "u-1", "where?", "--valid-at", "yesterday"], "is not an ISO time"),
        (["--user", "u-1", "where?", "--valid-at", "2026-05-01T00:00"], "has no time zone"),
    ],
)
def test_the_command_says_what_is_wrong_without_a_traceback(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", "search", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MEMSAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr  # usage: nothing was searched
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_date_is_a_valid_at_like_for_memories() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memsaga", "search", "--user", "u-1", "where?", "--valid-at", "2024-07-01"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MEMSAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 4, done.stderr  # parsed, then PostgreSQL is unreachable
    assert "cannot connect to PostgreSQL" in done.stderr
