"""Isolation between users: row-level security on the read models, and reading as one user.

Every table of every read-model version is protected when it is created
(:func:`protect_tables`, called by :func:`projections.versions.create_version`): row-level
security enabled and forced; its owner (the projector) reads and writes every row; when it
has a ``user_id`` column, the read role ``memsaga_reader`` may select the rows of the user
its transaction names, and no others. Reader views run with the rights of the reader
(:func:`expose_views`). The SQL is in ``projections/migrations/0004_row_level_security.sql``.

The read side queries inside :func:`as_user`: a read-only transaction that switches to
``memsaga_reader`` and sets ``memsaga.user_id``, both for that transaction only. So a query
that forgets its ``WHERE user_id`` still sees one user's rows, on any pool (the owner's
too). The user setting guards against such bugs; it is not an authentication: a session of
the read role can name any user (docs/privacy.md says what it does and does not protect).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Literal

import asyncpg

from eventstore import MigrationError
from eventstore.postgres import Connection
from projections.errors import ProjectionsError

READER_ROLE = "memsaga_reader"
"""The role read-side queries run as: neither the tables' owner nor a superuser."""

USER_SETTING = "memsaga.user_id"
"""The transaction's user, read by the reader policy of every table with a user column."""

Isolation = Literal["read_committed", "repeatable_read", "serializable"]

_ENTER = "SELECT set_config('role', $1, true), set_config($2, $3, true)"


class ReaderRoleUnavailable(ProjectionsError):
    """The read side cannot switch to the read role: not migrated, or the login is not a member."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"cannot read as {READER_ROLE} ({detail}): `memsaga migrate` creates the role; a login that"
            f" is not a superuser needs `GRANT {READER_ROLE} TO <login>` (docs/privacy.md)"
        )


async def protect_tables(conn: Connection, tables: Iterable[str]) -> None:
    """Enable and force row-level security on ``tables`` (qualified names), with their policies.

    :raises MigrationError: the schema predates row-level security (run ``memsaga migrate``).
    """
    for table in tables:
        await _call(conn, "SELECT memsaga.protect_read_model($1::regclass)", table)


async def expose_views(conn: Connection, views: Iterable[str]) -> None:
    """Make reader ``views`` run with the reader's rights, and let the read role query those
    with a user column.

    :raises MigrationError: the schema predates row-level security (run ``memsaga migrate``).
    """
    for view in views:
        await _call(conn, "SELECT memsaga.expose_read_model_view($1::regclass)", view)


async def _call(conn: Connection, sql: str, name: str) -> None:
    try:
        await conn.execute(sql, name)
    except asyncpg.UndefinedFunctionError:
        raise MigrationError(
            "the schema predates row-level security on the read models (projections migration 4):"
            " run `memsaga migrate`"
        ) from None


@contextlib.asynccontextmanager
async def as_user(
    db: asyncpg.Pool | Connection, user_id: str | None, *, isolation: Isolation | None = None
) -> AsyncIterator[Connection]:
    """A read-only transaction as :data:`READER_ROLE` that sees ``user_id``'s rows only (none
    when ``user_id`` is None or empty), on a connection of the pool ``db`` (or on ``db``, a
    connection); the role and the user end with it.

    :raises ReaderRoleUnavailable: the login cannot switch to the read role.
    """
    async with contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(db.acquire()) if isinstance(db, asyncpg.Pool) else db
        await stack.enter_async_context(conn.transaction(isolation=isolation, readonly=True))
        try:
            await conn.execute(_ENTER, READER_ROLE, USER_SETTING, user_id or "")
        except (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidParameterValueError) as exc:
            raise ReaderRoleUnavailable(str(exc)) from None
        yield conn
