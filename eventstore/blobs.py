"""Content-addressed blob store: big content lives here, events carry its address.

A blob put for a user (``user_id=``) on a store with a key ring is sealed with the user's key
and addressed by an HMAC under it (:mod:`eventstore.encryption`); other blobs are stored plain
under their SHA-256. Reading a user's sealed blob names the user.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore.encryption import open_blob, seal_blob
from eventstore.errors import BlobNotFound, EncryptionError
from eventstore.keys import KeyRing

Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
"""A pool, or a connection (inside the caller's transaction)."""


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 a blob is stored under."""
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    """Put bytes once, get them back by address."""

    async def put(self, data: bytes, *, user_id: str | None = None) -> str:
        """Store ``data`` (once, however often it is put) and return its address: its SHA-256,
        or for a user's blob on a store that seals, its HMAC under the user's key."""
        ...

    async def get(self, sha256: str, *, user_id: str | None = None) -> bytes:
        """The bytes stored under ``sha256``. :raises BlobNotFound: none are."""
        ...

    async def get_many(self, sha256s: list[str], *, user_id: str | None = None) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by address (missing ones are left out)."""
        ...

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        ...


class PostgresBlobStore:
    """Blobs in ``memsaga.blobs`` (bytea) over a pool or a connection; with ``keyring``, a
    user's blobs are sealed with the user's key."""

    def __init__(self, pool: Executor, keyring: KeyRing | None = None) -> None:
        self.pool = pool
        self.keyring = keyring

    async def put(self, data: bytes, *, user_id: str | None = None) -> str:
        """Store ``data`` once and return its address.

        :raises UserWasForgotten: ``user_id`` was forgotten.
        """
        if user_id is None or self.keyring is None:
            address, content, sealed = sha256_hex(data), data, False
        else:
            key = (await self.keyring.keys_for_write([user_id]))[user_id]
            (address, content), sealed = seal_blob(key, data), True
        await self.pool.execute(
            "INSERT INTO memsaga.blobs (sha256, size, content, sealed) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (sha256) DO NOTHING",
            address,
            len(data),
            content,
            sealed,
        )
        return address

    async def get(self, sha256: str, *, user_id: str | None = None) -> bytes:
        """The bytes stored under ``sha256``.

        :raises BlobNotFound: none are.
        :raises DataErased: a sealed blob of a forgotten user.
        """
        found = await self.get_many([sha256], user_id=user_id)
        if sha256 not in found:
            raise BlobNotFound(sha256)
        return found[sha256]

    async def get_many(self, sha256s: list[str], *, user_id: str | None = None) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by address, in one query (missing ones are left out).

        :raises DataErased: a sealed one belongs to a forgotten user.
        :raises EncryptionError: a sealed one was asked for without its user (or without a key ring).
        """
        rows = await self.pool.fetch(
            "SELECT sha256, content, sealed FROM memsaga.blobs WHERE sha256 = ANY($1::text[])", sha256s
        )
        key = None
        if any(r["sealed"] for r in rows):
            if user_id is None or self.keyring is None:
                sealed = next(r["sha256"] for r in rows if r["sealed"])
                raise EncryptionError(f"blob {sealed} is sealed with its user's key: read it naming the user")
            key = (await self.keyring.keys_for_read([user_id])).get(user_id)
        return {
            r["sha256"]: open_blob(key, r["sha256"], bytes(r["content"]))
            if r["sealed"]
            else bytes(r["content"])
            for r in rows
        }

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return bool(
            await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM memsaga.blobs WHERE sha256 = $1)", sha256)
        )


class InMemoryBlobStore:
    """Blobs in a dict, for unit tests."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, data: bytes, *, user_id: str | None = None) -> str:
        """Store ``data`` once and return its SHA-256 (never sealed: unit tests only)."""
        digest = sha256_hex(data)
        self._blobs.setdefault(digest, bytes(data))
        return digest

    async def get(self, sha256: str, *, user_id: str | None = None) -> bytes:
        """The bytes stored under ``sha256``. :raises BlobNotFound: none are."""
        try:
            return self._blobs[sha256]
        except KeyError:
            raise BlobNotFound(sha256) from None

    async def get_many(self, sha256s: list[str], *, user_id: str | None = None) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by hash (missing ones are left out)."""
        return {sha: self._blobs[sha] for sha in sha256s if sha in self._blobs}

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return sha256 in self._blobs
