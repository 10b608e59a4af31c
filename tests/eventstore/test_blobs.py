"""The content-addressed blob store, both kinds."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from eventstore import BlobNotFound, InMemoryBlobStore, PostgresBlobStore


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.services)])
def blobs(request: pytest.FixtureRequest) -> InMemoryBlobStore | PostgresBlobStore:
    if request.param == "memory":
        return InMemoryBlobStore()
    pool: asyncpg.Pool = request.getfixturevalue("pg_pool")
    return PostgresBlobStore(pool)


async def test_put_returns_sha256_and_get_returns_the_bytes(
    blobs: InMemoryBlobStore | PostgresBlobStore,
) -> None:
    data = "a long episode …".encode() * 5000
    digest = await blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert await blobs.get(digest) == data
    assert await blobs.exists(digest)


async def test_same_bytes_are_stored_once(blobs: InMemoryBlobStore | PostgresBlobStore) -> None:
    data = b"same content"
    assert await blobs.put(data) == await blobs.put(data)
    if isinstance(blobs, PostgresBlobStore):
        count = await blobs.pool.fetchval(
            "SELECT count(*) FROM memsaga.blobs WHERE sha256 = $1", hashlib.sha256(data).hexdigest()
        )
        assert count == 1


async def test_unknown_hash_is_a_named_error(blobs: InMemoryBlobStore | PostgresBlobStore) -> None:
    missing = "0" * 64
    assert not await blobs.exists(missing)
    with pytest.raises(BlobNotFound, match=missing):
        await blobs.get(missing)


async def test_get_many_returns_the_stored_ones_by_hash(blobs: InMemoryBlobStore | PostgresBlobStore) -> None:
    first, second = await blobs.put(b"first"), await blobs.put(b"second")
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert await blobs.get_many([first, missing, second]) == {first: b"first", second: b"second"}
    assert await blobs.get_many([]) == {}
