"""Hostile identifiers: refused with a message that says what is allowed, or kept verbatim; never
a NATS subject token that is not one."""

from __future__ import annotations

import re

import pytest

from memsaga.mcp_server import WrongUser, build_server, scoped_user
from memsaga.settings import Settings
from projections.subjects import subject_token
from sagas.memory_extraction.identifiers import MAX_ID_CHARS, RULE, identifier_problem, identifier_problems

KEPT = ["'; DROP TABLE events;--", "a.b.>", "*", ">", "../x", "u 1", "Zoë", "用户", "%", "_", "a%", "😀"]
REFUSED = {
    "": "is empty",
    "a\x00b": "NUL",
    "x" * (10 * 1024): "10,240 characters",
    " ": "whitespace",
    " u-1": "whitespace",
    "u-1\n": "control character",
    "a\tb": "control character",
    "a\u2028b": "line break",
    "caf\udce9": "not valid UTF-8",  # what Python makes of the Latin-1 byte 0xE9 in argv
}


@pytest.mark.parametrize("value", KEPT)
def test_identifiers_with_any_printable_text_are_kept_verbatim(value: str) -> None:
    assert identifier_problem(value, "--user") is None


@pytest.mark.parametrize(("value", "why"), REFUSED.items())
def test_identifiers_that_cannot_be_kept_are_refused_saying_what_is_allowed(value: str, why: str) -> None:
    problem = identifier_problem(value, "--user")
    assert problem is not None and problem.startswith("--user") and why in problem and RULE in problem
    assert len(problem) < 500  # a 10 KB id is not echoed back whole


def test_the_longest_id_is_accepted_and_one_more_character_is_not() -> None:
    assert identifier_problem("x" * MAX_ID_CHARS, "id") is None
    assert identifier_problem("x" * (MAX_ID_CHARS + 1), "id") is not None


def test_problems_are_named_and_none_is_skipped() -> None:
    assert identifier_problems(user_id="u-1", correlation_id=None) == []
    [problem] = identifier_problems(user_id="u-1", workflow_id="a\x00")
    assert problem.startswith("workflow_id")


TOKENS = [*KEPT, *REFUSED, "a_b", "a-b", "~", "~2E", "a~2Eb", "MemoryCreated", "episode"]
_NATS_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space


@pytest.mark.parametrize("text", TOKENS)
def test_a_subject_token_never_holds_what_nats_reads_as_syntax(text: str) -> None:
    token = subject_token(text)
    assert _NATS_TOKEN.fullmatch(token), token
    assert not {".", "*", ">"} & set(token)


def test_subject_tokens_are_plain_names_unchanged_and_never_shared() -> None:
    assert subject_token("MemoryCreated") == "MemoryCreated" and subject_token("episode") == "episode"
    assert subject_token("a.b") == "a~2Eb" and subject_token("") == "~"
    tokens = [subject_token(t) for t in dict.fromkeys(TOKENS)]
    assert len(set(tokens)) == len(tokens)  # "a.b" and "a_b" (or "a~2Eb") no longer share one


def test_the_mcp_server_refuses_a_user_it_could_not_serve() -> None:
    assert scoped_user(None, "'; DROP TABLE events;--") == "'; DROP TABLE events;--"
    with pytest.raises(WrongUser, match="NUL"):
        scoped_user(None, "u\x00")
    with pytest.raises(WrongUser, match="more than 200"):
        build_server(Settings(), user="x" * 201)
