"""Content-addressed blob store: big content lives here, events carry its SHA-256."""

from __future__ import annotations

import hashlib
from typing import Protocol

import asyncpg

from eventstore.errors import BlobNotFound


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

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        ...


class PostgresBlobStore:
    """Blobs in ``memsaga.blobs`` (bytea), keyed by SHA-256."""

    def __init__(self, pool: asyncpg.Pool) -> None:
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

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return sha256 in self._blobs
