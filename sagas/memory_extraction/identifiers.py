"""Which identifiers memsaga accepts from outside: user ids, workflow ids (``--id``, MCP
``request_id``) and correlation ids.

An identifier is stored verbatim, whatever it holds (quotes, ``;``, dots, ``*``, ``>``, ``/``,
``..``, spaces inside, any script), when it is 1 to :data:`MAX_ID_CHARS` characters with no
control character (NUL, tab, line break, …), no line or paragraph separator, no leading or
trailing whitespace, and valid UTF-8. It is only ever a SQL parameter compared with ``=``
(never a pattern, never a prefix) and never part of a NATS subject. Anything else is refused
before anything is recorded: a NUL cannot be stored in PostgreSQL text, a line break forges
log lines, an id that differs from another by invisible whitespace names a different user,
and an unbounded id bloats every event, index and Temporal search attribute it is copied to.
The checks are pure and run at the boundary (CLI, Python client, MCP), not in the workflow:
a workflow replaying its history must decide as it did when it ran.
"""

from __future__ import annotations

import unicodedata

MAX_ID_CHARS = 200
"""Longest identifier accepted, in characters (200 four-byte characters stay under Temporal's
1,000-byte limit on workflow ids)."""

RULE = (
    f"ids are 1 to {MAX_ID_CHARS} characters of valid UTF-8, with no control characters (NUL, tab,"
    " line break) and no leading or trailing whitespace; anything else (quotes, dots, *, >, /, spaces"
    " inside) is kept as given"
)
"""What an identifier may hold, for error messages."""


def _shown(value: str) -> str:
    text = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return repr(text if len(text) <= 40 else text[:40] + "…")


def identifier_problem(value: str, name: str) -> str | None:
    """What is wrong with ``value`` as the identifier ``name`` (e.g. ``"--user"``), or None."""
    if not value:
        return f"{name} is empty: {RULE}"
    if len(value) > MAX_ID_CHARS:
        return f"{name} has {len(value):,} characters, more than {MAX_ID_CHARS}: {RULE}"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):  # how Python hands over undecodable argv bytes
        return f"{name} {_shown(value)} is not valid UTF-8: {RULE}"
    if "\x00" in value:
        return f"{name} {_shown(value)} contains a NUL character (\\x00): {RULE}"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        return f"{name} {_shown(value)} contains a control character or line break: {RULE}"
    if value != value.strip():
        return f"{name} {_shown(value)} starts or ends with whitespace: {RULE}"
    return None


def identifier_problems(**named: str | None) -> list[str]:
    """The problems of each given identifier, by name (``user_id=…, workflow_id=…``); None is skipped."""
    found = (identifier_problem(value, name) for name, value in named.items() if value is not None)
    return [problem for problem in found if problem is not None]
