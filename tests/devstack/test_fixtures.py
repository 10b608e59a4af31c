"""The session fixtures of tests/conftest.py hand out working services."""

from __future__ import annotations

import asyncpg
import nats
import pytest

from memsaga.devstack import DatabaseFactory, probe_temporal


async def test_fresh_database_creates_and_drops_databases(fresh_database: DatabaseFactory) -> None:
    url = await fresh_database()
    conn = await asyncpg.connect(url)
    try:
        assert (await conn.fetchval("SELECT current_database()")).startswith("memsaga_test_")
    finally:
        await conn.close()
    await fresh_database.drop(url)
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)


async def test_nats_url_has_jetstream(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().account_info()
    finally:
        await client.close()


async def test_temporal_address_answers(temporal_address: str) -> None:
    assert await probe_temporal(temporal_address) is None
