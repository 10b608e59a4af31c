"""Personal data in projections: events arrive sealed (from JetStream or the store's tail) and are
opened right before their handlers run, with the store's vault; the vault is also what a handler
reads a user's sealed blob with (:func:`user_blobs`).

Events of a forgotten user are not applied at all (:func:`erased`), except the one that says so.
The runner and the rebuild set the vault for the handlers they call (:func:`using_vault`);
without one (a store without encryption), events and blobs are read as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from eventstore import RecordedEvent
from eventstore.blobs import Executor, PostgresBlobStore
from eventstore.encryption import ERASED_FLAG
from eventstore.postgres import Connection
from eventstore.vault import Vault
from projections.base import READ_SCHEMA, Handler, Tables, quote_ident

ERASURE_EVENT_TYPE = "UserForgotten"
"""The event that removes a forgotten user's rows (sagas/forgetting.py): applied although its
user is forgotten, unlike every other event of that user."""

_VAULT: ContextVar[Vault | None] = ContextVar("memsaga_projection_vault", default=None)


@contextmanager
def using_vault(vault: Vault | None) -> Iterator[None]:
    """Handlers called inside read users' sealed blobs with ``vault``."""
    token = _VAULT.set(vault)
    try:
        yield
    finally:
        _VAULT.reset(token)


def user_blobs(conn: Executor) -> PostgresBlobStore:
    """The blob store over ``conn`` that opens users' sealed blobs with the handler's vault."""
    vault = _VAULT.get()
    return PostgresBlobStore(conn, None if vault is None else vault.keyring)


def erased(event: RecordedEvent) -> bool:
    """Whether ``event`` belongs to a forgotten user and must not reach a handler: read models
    keep no row of a forgotten user, also when a late or replayed event of theirs arrives."""
    return bool(event.metadata.get(ERASED_FLAG)) and event.event_type != ERASURE_EVENT_TYPE


def forgetting_handler(*tables: str) -> Handler:
    """A ``UserForgotten`` handler deleting the user's rows from ``tables`` (logical names; each
    has a ``user_id`` column), in that order, in every version's tables: the active one, one being
    built, and earlier ones kept after a rebuild."""

    async def on_user_forgotten(conn: Connection, names: Tables, event: RecordedEvent) -> None:
        for table in tables:
            for physical in await every_version(conn, table):
                await conn.execute(f"DELETE FROM {physical} WHERE user_id = $1", event.user_id)

    return on_user_forgotten


async def every_version(conn: Connection, table: str) -> list[str]:
    """The physical tables of every version of the logical ``table`` (``<table>_v<N>``), oldest first."""
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename ~ $2",
        READ_SCHEMA,
        f"^{re.escape(table)}_v[0-9]+$",
    )
    names = sorted((r["tablename"] for r in rows), key=lambda n: int(n.rsplit("_v", 1)[1]))
    return [f"{READ_SCHEMA}.{quote_ident(name)}" for name in names]
