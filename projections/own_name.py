"""The user's own name in a question, read as "the user" before a search ranks anything.

Every search is scoped to one user, so a question that names them ("Where does Tomás live?")
says no more than "Where does the user live?". Both rankings take the name as the question's
rarest word, though, and put the one memory that states it ("User's name is Tomás") first: on
the retrieval fixtures, most questions that name their user were answered by the name memory.
Memory texts say "User" for the user, and the keyword ranking drops that word already, so the
name is written as "the user" (and "Tomás's" as "the user's") before the question is embedded
and matched.

The name is the value of the user's current memory in the ``name`` slot, read from the
``memories`` read model as that user. Without that read model (never built) or without such a
memory, the question is searched as it was asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import asyncpg

from eventstore.postgres import Connection
from projections.memories import MEMORIES

NAME_SLOT = "name"
"""The slot of the memory that states the user's name (the rule extractor's ``name`` rules)."""

_NAMES = """SELECT value FROM {memories}
    WHERE user_id = $1 AND slot = $2 AND status = 'current' AND value IS NOT NULL"""
_MIN_LENGTH = 2  # a one-letter initial would replace the word "I"


async def own_names(conn: Connection, user_id: str) -> tuple[str, ...]:
    """The words of ``user_id``'s current name(s), longest first; none without a name memory.

    ``conn`` must see the user's rows (a connection of :func:`projections.row_security.as_user`).
    """
    try:
        rows = await conn.fetch(_NAMES.format(**MEMORIES.views()), user_id, NAME_SLOT)
    except asyncpg.UndefinedTableError:  # the memories read model was never built
        return ()
    return name_words(str(row["value"]) for row in rows)


def name_words(names: Iterable[str]) -> tuple[str, ...]:
    """The distinct words of ``names`` that can stand for the user, longest first."""
    words = {word for name in names for word in name.split() if len(word) >= _MIN_LENGTH}
    return tuple(sorted(words, key=lambda word: (-len(word), word)))


def about_the_user(question: str, names: Iterable[str]) -> str:
    """``question`` with each of the user's name words (as written, case and all) as "the user".

    ``about_the_user("Where does Tomás live?", ["Tomás"])`` is "Where does the user live?";
    a possessive becomes "the user's". Words are matched whole, so "Ana" leaves "Anatomy" alone.
    """
    words = [re.escape(word) for word in names]
    if not words:
        return question
    pattern = re.compile(rf"(?<![\w'])(?:{'|'.join(words)})(?:\s+(?:{'|'.join(words)}))*('s|’s)?(?!\w)")
    rewritten = pattern.sub(lambda m: "the user's" if m.group(1) else "the user", question)
    if rewritten.startswith("the user") and not question.startswith("the user"):
        return "T" + rewritten[1:]  # the name began the question
    return rewritten
