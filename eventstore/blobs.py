"""Content-addressed blob store: big content lives here, events carry its SHA-256."""

from __future__ import annotations

import hashlib
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore.errors import BlobNotFound

Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
"""A pool, or a connection (inside the caller's transaction)."""


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 a blob is stored under."""
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    """Put bytes once, get them back by hash."""

    async def put(self, data: bytes) -> str:
        """Store ``data`` (once, however often it is put) and return its SHA-256."""
        ...

    async def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``. :raises BlobNotFound: none are."""
        ...

    async def get_many(self, sha256s: list[str]) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by hash (missing ones are left out)."""
        ...

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        ...


class PostgresBlobStore:
    """Blobs in ``memsaga.blobs`` (bytea), keyed by SHA-256, over a pool or a connection."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool

    async def put(self, data: bytes) -> str:
        """Store ``data`` once and return its SHA-256."""
        digest = sha256_hex(data)
        await self.pool.execute(
            "INSERT INTO memsaga.blobs (sha256, size, content) VALUES ($1, $2, $3)"
            " ON CONFLICT (sha256) DO NOTHING",
            digest,
            len(data),
            data,
        )
        return digest

    async def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``. :raises BlobNotFound: none are."""
        data = await self.pool.fetchval("SELECT content FROM memsaga.blobs WHERE sha256 = $1", sha256)
        if data is None:
            raise BlobNotFound(sha256)
        return bytes(data)

    async def get_many(self, sha256s: list[str]) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by hash, in one query (missing ones are left out)."""
        rows = await self.pool.fetch(
            "SELECT sha256, content FROM memsaga.blobs WHERE sha256 = ANY($1::text[])", sha256s
        )
        return {row["sha256"]: bytes(row["content"]) for row in rows}

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return bool(
            await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM memsaga.blobs WHERE sha256 = $1)", sha256)
        )


class InMemoryBlobStore:
    """Blobs in a dict, for unit tests."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, data: bytes) -> str:
        """Store ``data`` once and return its SHA-256."""
        digest = sha256_hex(data)
        self._blobs.setdefault(digest, bytes(data))
        return digest

    async def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``. :raises BlobNotFound: none are."""
        try:
            return self._blobs[sha256]
        except KeyError:
            raise BlobNotFound(sha256) from None

    async def get_many(self, sha256s: list[str]) -> dict[str, bytes]:
        """The blobs stored under ``sha256s``, by hash (missing ones are left out)."""
        return {sha: self._blobs[sha] for sha in sha256s if sha in self._blobs}

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return sha256 in self._blobs
