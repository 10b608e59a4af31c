"""Batches through ``append_events``, whose stored ids are found by the insert's own unique check:
every way a batch can meet a stored id answers as the duplicate check before it did."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    EventIdConflict,
    PartialDuplicate,
    PostgresEventStore,
    WrongExpectedVersion,
)
from tests.eventstore.conftest import noted, stream
from tests.eventstore.schemas import make_registry

MakeStore = Callable[..., Any]


async def test_a_batch_sent_again_with_any_version_is_a_duplicate(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    batch = [noted("a"), noted("b"), noted("c")]
    original = await store.append(sid, batch, expected_version=ANY)
    await store.append(sid, [noted("d"), noted("e")])
    # The version check passes: the insert meets the stored ids.
    again = await store.append(sid, batch, expected_version=ANY)
    assert again.duplicate
    assert (again.first_version, again.last_version, again.positions) == (1, 3, original.positions)
    assert await store.stream_version(sid) == 5


async def test_a_batch_sent_again_with_its_exact_stale_version_is_a_duplicate(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    await store.append(sid, [noted("first"), noted("second")])
    batch = [noted("a"), noted("b")]
    original = await store.append(sid, batch, expected_version=2)
    await store.append(sid, [noted("c"), noted("d")])
    again = await store.append(sid, batch, expected_version=2)
    assert again.duplicate and again.positions == original.positions


async def test_a_new_batch_with_a_stale_version_is_still_refused(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    await store.append(sid, [noted("a"), noted("b")])
    with pytest.raises(WrongExpectedVersion):
        await store.append(sid, [noted("c"), noted("d")], expected_version=1)
    assert await store.stream_version(sid) == 2


async def test_a_batch_whose_last_event_is_stored_stores_nothing(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    stored = noted("stored")
    await store.append(sid, [stored])
    with pytest.raises(PartialDuplicate):
        await store.append(sid, [noted("new 1"), noted("new 2"), stored], expected_version=ANY)
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["stored"]


async def test_a_batch_holding_an_id_of_another_stream_is_refused(make_store: MakeStore) -> None:
    store = make_store()
    batch = [noted("a"), noted("b")]
    await store.append(stream(), batch)
    other = stream()
    with pytest.raises(EventIdConflict) as info:
        await store.append(other, batch, expected_version=NO_STREAM)  # the version check passes
    assert info.value.field == "stream_id"
    assert await store.stream_version(other) == 0


async def test_one_batch_raced_into_two_streams_lands_in_one(make_store: MakeStore) -> None:
    store = make_store()
    batch = [noted("x"), noted("y")]
    streams = [stream() for _ in range(6)]
    results = await asyncio.gather(
        *(store.append(s, batch, expected_version=NO_STREAM) for s in streams), return_exceptions=True
    )
    landed = [r for r in results if not isinstance(r, BaseException)]
    assert len(landed) == 1 and not landed[0].duplicate
    assert all(isinstance(r, EventIdConflict) for r in results if isinstance(r, BaseException))
    assert sorted([await store.stream_version(s) for s in streams]) == [0] * 5 + [2]


@pytest.mark.services
async def test_a_duplicate_batch_inside_a_transaction_leaves_it_usable(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    sid = stream()
    batch = [noted("a"), noted("b")]
    async with pg_pool.acquire() as conn, conn.transaction():
        await store.append(sid, batch, conn=conn)
        again = await store.append(sid, batch, expected_version=ANY, conn=conn)
        assert again.duplicate
        await store.append(sid, [noted("c"), noted("d")], conn=conn)
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["a", "b", "c", "d"]
