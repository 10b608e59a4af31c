"""Which user an MCP tool call acts for: the server's own, or the one each call names."""

from __future__ import annotations

import pytest

from memsaga.mcp_server import WrongUser, scoped_user


def test_a_server_for_one_user_takes_the_call_without_a_user_or_with_the_same() -> None:
    assert scoped_user("u-1", None) == scoped_user("u-1", "u-1") == scoped_user("u-1", " ") == "u-1"


def test_a_server_for_one_user_refuses_another_and_says_whom_it_serves() -> None:
    with pytest.raises(WrongUser, match=r"serves user 'u-1' only .* not 'u-2'"):
        scoped_user("u-1", "u-2")


@pytest.mark.parametrize("given", [None, "", "  "])
def test_a_server_for_every_user_needs_each_call_to_name_one(given: str | None) -> None:
    with pytest.raises(WrongUser, match="user_id is required"):
        scoped_user(None, given)


def test_a_server_for_every_user_acts_for_the_named_one() -> None:
    assert scoped_user(None, " u-2 ") == "u-2"
