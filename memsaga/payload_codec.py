"""Temporal payloads sealed with the workflow's user's key, so that no history holds a user's
episodes or memories in plain text (docs/privacy.md).

The codec learns a workflow's user from ``memsaga.saga_owners`` (the client registers each saga
before it starts it), through Temporal's serialization context (the workflow id of the payload).
A sealed payload names its user in its metadata, so decoding needs no lookup: the UI's codec
server (``memsaga codec-server``) decodes for an operator who holds the master key. Workflows
without an owner (forgetting a user) keep their payloads, which hold no personal data, plain.

After a user is forgotten their payloads cannot be decoded by anyone: decoding one raises
:class:`~eventstore.errors.DataErased`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Self

import asyncpg
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from eventstore.encryption import open_bytes, seal_bytes
from eventstore.errors import DataErased
from eventstore.keys import DEFAULT_CACHE_SECONDS, KeyRing
from memsaga.bootstrap import master_key, redact
from memsaga.errors import DatabaseUnreachable
from memsaga.settings import Settings
from projections.relay import DATABASE_ERRORS

ENCODING = b"binary/memsaga-sealed"
USER = "memsaga-user"
WORKFLOW = "memsaga-workflow"


_UNREACHABLE: tuple[type[Exception], ...] = (
    *(e for e in DATABASE_ERRORS if issubclass(e, Exception)),
    OSError,
)


@contextlib.contextmanager
def _database(dsn: str) -> Iterator[None]:
    """PostgreSQL errors of the codec's lookups as :class:`DatabaseUnreachable` (retryable by callers)."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise DatabaseUnreachable(redact(dsn), exc) from exc


class SagaOwners:
    """``memsaga.saga_owners``: the user of each saga, by workflow id (cached; owners never change)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str = "") -> None:
        self.pool = pool
        self.dsn = dsn
        self._known: dict[str, str | None] = {}

    async def register(self, workflow_id: str, user_id: str) -> None:
        """Record that ``workflow_id`` is ``user_id``'s saga (before it starts).

        :raises DatabaseUnreachable: PostgreSQL does not answer.
        """
        with _database(self.dsn):
            await self.pool.execute(
                "INSERT INTO memsaga.saga_owners (workflow_id, user_id) VALUES ($1, $2)"
                " ON CONFLICT (workflow_id) DO NOTHING",
                workflow_id,
                user_id,
            )
        self._known[workflow_id] = user_id

    async def user_of(self, workflow_id: str) -> str | None:
        """The saga's user, or None for a workflow nobody registered."""
        if workflow_id not in self._known:
            with _database(self.dsn):
                self._known[workflow_id] = await self.pool.fetchval(
                    "SELECT user_id FROM memsaga.saga_owners WHERE workflow_id = $1", workflow_id
                )
        return self._known[workflow_id]


class KeyAccess:
    """A pool, the owners and the key ring, made on first use from ``settings`` (a Temporal client
    connects before any database work is needed, and a command whose payloads are all plain
    never needs the database or the master key)."""

    def __init__(self, settings: Settings, *, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self._ready: tuple[SagaOwners, KeyRing] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> tuple[SagaOwners, KeyRing]:
        """The owners and key ring (connecting the first time).

        :raises ServiceNotConfigured: no database is configured.
        :raises DatabaseUnreachable: it does not answer.
        :raises MasterKeyMissing, InvalidMasterKey: no usable master key is configured.
        """
        if self._ready is None:
            async with self._lock:
                if self._ready is None:
                    master = master_key(self.settings)
                    dsn = self.settings.require_database_url()
                    with _database(dsn):
                        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=4)
                    keyring = KeyRing(pool, master, cache_seconds=self.cache_seconds)
                    self._ready = SagaOwners(pool, dsn), keyring
        return self._ready


class SealingCodec(PayloadCodec, WithSerializationContext):
    """Seals the payloads of a user's saga with the user's key (AES-256-GCM)."""

    def __init__(self, access: KeyAccess, workflow_id: str | None = None) -> None:
        self.access = access
        self.workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        """The codec for the payloads of one workflow (or of its activities)."""
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        return type(self)(self.access, workflow_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seal ``payloads`` when the workflow has an owner; leave them as they are otherwise.

        :raises UserWasForgotten: the owner was forgotten (nothing of theirs is stored any more).
        """
        if self.workflow_id is None or not payloads:
            return list(payloads)
        owners, keyring = await self.access.get()
        user_id = await owners.user_of(self.workflow_id)
        if user_id is None:
            return list(payloads)
        with _database(owners.dsn):
            key = (await keyring.keys_for_write([user_id]))[user_id]
        aad = _aad(user_id, self.workflow_id)
        return [
            Payload(
                metadata={"encoding": ENCODING, USER: user_id.encode(), WORKFLOW: self.workflow_id.encode()},
                data=seal_bytes(key, p.SerializeToString(), aad),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Open sealed payloads (others pass through).

        :raises DataErased: a payload of a forgotten user.
        :raises SealedDataCorrupt: a payload that does not open with its user's key.
        """
        if not any(p.metadata.get("encoding") == ENCODING for p in payloads):
            return list(payloads)
        owners, keyring = await self.access.get()
        with _database(owners.dsn):
            return [await _open(keyring, p) for p in payloads]


async def _open(keyring: KeyRing, payload: Payload) -> Payload:
    if payload.metadata.get("encoding") != ENCODING:
        return payload
    user_id, workflow_id = payload.metadata[USER].decode(), payload.metadata[WORKFLOW].decode()
    key = (await keyring.keys_for_read([user_id])).get(user_id)
    if key is None:
        raise DataErased(f"a payload of workflow {workflow_id}")
    opened = Payload()
    opened.ParseFromString(open_bytes(key, payload.data, _aad(user_id, workflow_id)))
    return opened


def _aad(user_id: str, workflow_id: str) -> bytes:
    return len(user_id).to_bytes(4, "big") + user_id.encode() + workflow_id.encode()
