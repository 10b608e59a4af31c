"""Personal fields sealed at append, opened on read; keys made, destroyed and re-wrapped
(eventstore/vault.py, keys.py, blobs.py) against a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from eventstore import (
    EVENTSTORE_MIGRATIONS,
    InvalidEvent,
    NewEvent,
    PostgresBlobStore,
    PostgresEventStore,
    SchemaRegistry,
    create_pool,
)
from eventstore.columns import SELECT_LIST
from eventstore.encryption import ERASED, ERASED_FLAG, PAYLOAD_FORMAT, seal_payload
from eventstore.envelope import EventPayload
from eventstore.errors import DataErased, UserWasForgotten, WrongMasterKey
from eventstore.keys import KeyRing, MasterKey
from eventstore.personal import PersonalStr
from eventstore.vault import Vault
from memsaga.devstack.databases import DatabaseFactory
from projections.subjects import decode_body, event_body
from sagas.memory_extraction.events import MemoryCreated, register_events
from tests.support import migrated_database

pytestmark = pytest.mark.services


def registry() -> SchemaRegistry:
    return register_events(SchemaRegistry())


def sealed_store(pool: asyncpg.Pool, master: MasterKey) -> PostgresEventStore:
    reg = registry()
    return PostgresEventStore(pool, reg, vault=Vault(reg, KeyRing(pool, master, cache_seconds=0)))


def memory(user: str, text: str, *, slot: str = "residence") -> NewEvent:
    payload = MemoryCreated(
        memory_id=f"m-{uuid.uuid4().hex[:8]}", user_id=user, episode_id="e-1", text=text, kind="fact",
        content_hash=f"hash-of-{text}", vector_sha256=None, dimension=None, embedder=None, source="chat",
        slot=slot, value=text,
    )  # fmt: skip
    return NewEvent.of(
        payload, correlation_id="c", causation_id="c", user_id=user,
        occurred_at=datetime(2026, 12, 3, tzinfo=UTC),
    )  # fmt: skip


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_personal_fields_are_ciphertext_in_the_table_and_plain_when_read(pg_pool: asyncpg.Pool) -> None:
    store, u = sealed_store(pg_pool, MasterKey.generate()), user()
    event = memory(u, "I live in Utrecht")
    stream = f"memory-{uuid.uuid4().hex[:8]}"
    await store.append(stream, [event])
    raw = await pg_pool.fetchval(
        "SELECT payload::text FROM memsaga.events WHERE event_id = $1", event.event_id
    )
    assert "Utrecht" not in raw and "$enc" in raw
    [read] = await store.read_stream(stream)
    assert read.payload["text"] == "I live in Utrecht" and read.payload["slot"] == "residence"
    assert read.metadata["sealed"] is True and "$sealed" not in read.payload
    again = await store.append(stream, [event])  # an at-least-once re-send: a duplicate, not a conflict
    assert again.duplicate


async def test_the_sealed_column_holds_the_ciphertext_the_payload_tokens(pg_pool: asyncpg.Pool) -> None:
    store, u = sealed_store(pg_pool, MasterKey.generate()), user()
    event = memory(u, "I live in Utrecht")
    await store.append(f"memory-{uuid.uuid4().hex[:8]}", [event])
    row = await pg_pool.fetchrow(
        "SELECT payload::text AS payload, sealed FROM memsaga.events WHERE event_id = $1", event.event_id
    )
    assert row is not None
    assert "$sealed" not in row["payload"] and '"$idx"' in row["payload"]  # slot and hash: blind indexes
    assert row["sealed"][:1] == PAYLOAD_FORMAT and b"Utrecht" not in row["sealed"]


async def test_rows_sealed_before_the_sealed_column_still_open(pg_pool: asyncpg.Pool) -> None:
    """Events stored in the first layout (values under "$sealed" in the payload) read as they did."""
    master, u = MasterKey.generate(), user()
    store = sealed_store(pg_pool, master)
    keys = await KeyRing(pg_pool, master).keys_for_write([u])
    event = memory(u, "I was born in Faro")
    reg = registry()
    assert store.vault is not None
    paths = store.vault.paths("MemoryCreated", event.event_version)
    legacy = seal_payload(reg.validate(event), paths, keys[u], event.event_id)
    stream = f"memory-{uuid.uuid4().hex[:8]}"
    await pg_pool.execute(
        """INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
               correlation_id, causation_id, user_id, occurred_at, payload, metadata)
           VALUES ($1, $2, 1, 'MemoryCreated', $5, 'c', 'c', $3, now(), $4::jsonb, '{"sealed": true}')""",
        event.event_id, stream, u, orjson.dumps(legacy).decode(), event.event_version,
    )  # fmt: skip
    [read] = await store.read_stream(stream)
    assert read.payload["text"] == "I was born in Faro" and "$sealed" not in read.payload
    raw = await store.tail(after_position=(await store.head_position()) - 1).poll(1)
    [opened] = await store.open_events(raw)
    assert opened.payload["value"] == "I was born in Faro"
    await KeyRing(pg_pool, master).destroy(u)
    [erased] = await store.read_stream(stream)
    assert erased.payload["text"] == ERASED and erased.metadata[ERASED_FLAG] is True


class NoteV1(EventPayload):
    event_type = "Note"
    event_version = 1
    text: PersonalStr


class NoteV2(EventPayload):
    event_type = "Note"
    event_version = 2
    text: PersonalStr
    words: int


async def test_an_upcaster_reads_the_opened_payload_of_an_old_version(pg_pool: asyncpg.Pool) -> None:
    """Upcasting happens after opening: an upcaster may read a personal value."""
    master, u, stream = MasterKey.generate(), user(), f"note-{uuid.uuid4().hex[:8]}"
    old = SchemaRegistry()
    old.register(NoteV1)
    writer = PostgresEventStore(pg_pool, old, vault=Vault(old, KeyRing(pg_pool, master)))
    note = NewEvent.of(
        NoteV1(text="three little words"), correlation_id="c", causation_id="c", user_id=u,
        occurred_at=datetime(2026, 12, 3, tzinfo=UTC),
    )  # fmt: skip
    result = await writer.append(stream, [note])
    new = SchemaRegistry()
    new.register(NoteV1)
    new.register(NoteV2)
    new.register_upcaster("Note", 1, lambda p: {**p, "words": len(p["text"].split())})
    reader = PostgresEventStore(pg_pool, new, vault=Vault(new, KeyRing(pg_pool, master)))
    [read] = await reader.read_stream(stream)
    assert (read.event_version, read.stored_version, read.payload["words"]) == (2, 1, 3)
    [raw] = await reader.tail(after_position=result.positions[0] - 1).poll(1)
    [opened] = await reader.open_events([raw])
    assert opened.payload == read.payload and opened.sealed is None and raw.sealed is not None


async def test_a_raw_sealed_event_crosses_jetstream_json_and_opens(pg_pool: asyncpg.Pool) -> None:
    store, u = sealed_store(pg_pool, MasterKey.generate()), user()
    result = await store.append(f"memory-{uuid.uuid4().hex[:8]}", [memory(u, "I drive a Volvo")])
    [raw] = await store.tail(after_position=result.positions[0] - 1).poll(1)
    body = event_body(raw)
    assert b"Volvo" not in body
    carried = decode_body(body)
    assert carried.sealed == raw.sealed
    [opened] = await store.open_events([carried])
    assert opened.payload["text"] == "I drive a Volvo"
    rows = await pg_pool.fetch(f"SELECT {SELECT_LIST} FROM memsaga.events WHERE position = $1", raw.position)
    assert store.vault is not None
    [decoded] = await store.vault.decode_rows(rows)
    assert decoded.payload == opened.payload and decoded.event_version == opened.event_version


async def test_raw_events_from_the_tail_stay_sealed_until_opened(pg_pool: asyncpg.Pool) -> None:
    store, u = sealed_store(pg_pool, MasterKey.generate()), user()
    event = memory(u, "I work at Siemens")
    result = await store.append(f"memory-{uuid.uuid4().hex[:8]}", [event])
    tail = store.tail(after_position=result.positions[0] - 1)
    [raw] = await tail.poll(1)
    assert "Siemens" not in repr(raw.payload)
    [opened] = await store.open_events([raw])
    assert opened.payload["text"] == "I work at Siemens"
    assert "Siemens" not in repr(raw.payload)  # the raw event stays sealed (a parked copy, say)


async def test_events_are_found_by_an_indexed_personal_field_for_their_user_only(
    pg_pool: asyncpg.Pool,
) -> None:
    store, a, b = sealed_store(pg_pool, MasterKey.generate()), user(), user()
    await store.append(f"memory-{uuid.uuid4().hex[:8]}", [memory(a, "Lisbon", slot="residence")])
    await store.append(f"memory-{uuid.uuid4().hex[:8]}", [memory(b, "Porto", slot="residence")])
    found = await store.find_events("MemoryCreated", payload_field="slot", values=["residence"], user_id=a)
    assert [e.payload["text"] for e in found] == ["Lisbon"]


async def test_personal_data_without_a_user_is_refused(pg_pool: asyncpg.Pool) -> None:
    store = sealed_store(pg_pool, MasterKey.generate())
    event = memory("nobody", "x").model_copy(update={"user_id": None})
    with pytest.raises(InvalidEvent, match="no user_id"):
        await store.append(f"memory-{uuid.uuid4().hex[:8]}", [event])


async def test_a_destroyed_key_erases_old_events_and_refuses_new_ones(pg_pool: asyncpg.Pool) -> None:
    master, u = MasterKey.generate(), user()
    store = sealed_store(pg_pool, master)
    stream = f"memory-{uuid.uuid4().hex[:8]}"
    await store.append(stream, [memory(u, "I'm allergic to peanuts")])
    keyring = KeyRing(pg_pool, master)
    assert await keyring.destroy(u) is True
    assert await keyring.destroy(u) is False  # idempotent
    [read] = await store.read_stream(stream)
    assert read.payload["text"] == ERASED and read.metadata[ERASED_FLAG] is True
    with pytest.raises(UserWasForgotten):
        await store.append(stream, [memory(u, "again")])
    assert await keyring.state(u) == "destroyed"


async def test_blobs_of_a_user_are_sealed_and_erased_with_the_key(pg_pool: asyncpg.Pool) -> None:
    master, a, b = MasterKey.generate(), user(), user()
    keyring = KeyRing(pg_pool, master, cache_seconds=0)
    blobs = PostgresBlobStore(pg_pool, keyring)
    data = b"a long episode about peanuts " * 50
    address_a, address_b = await blobs.put(data, user_id=a), await blobs.put(data, user_id=b)
    assert address_a != address_b
    content = await pg_pool.fetchval("SELECT content FROM memsaga.blobs WHERE sha256 = $1", address_a)
    assert b"peanuts" not in bytes(content)
    assert await blobs.get(address_a, user_id=a) == data
    await keyring.destroy(a)
    with pytest.raises(DataErased):
        await blobs.get(address_a, user_id=a)
    assert await blobs.get(address_b, user_id=b) == data


async def test_another_master_key_is_refused_and_rotation_keeps_data_readable(
    fresh_database: DatabaseFactory,
) -> None:
    dsn = await migrated_database(fresh_database, [EVENTSTORE_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        await _rotate(pool)
    finally:
        await pool.close()


async def _rotate(pg_pool: asyncpg.Pool) -> None:
    old, new, u = MasterKey.generate(), MasterKey.generate(), user()
    store = sealed_store(pg_pool, old)
    stream = f"memory-{uuid.uuid4().hex[:8]}"
    await store.append(stream, [memory(u, "I live in Ghent")])
    with pytest.raises(WrongMasterKey):
        await sealed_store(pg_pool, new).read_stream(stream)
    rotated = await KeyRing(pg_pool, old).rewrap(new)
    assert rotated >= 1
    [read] = await sealed_store(pg_pool, new).read_stream(stream)
    assert read.payload["text"] == "I live in Ghent"


async def test_a_key_read_again_is_reused_until_it_is_destroyed(pg_pool: asyncpg.Pool) -> None:
    """An expired entry is read again (is the key still live?), but its key material is kept
    while the stored key is unchanged; once another process destroyed it, it is never served."""
    master, u = MasterKey.generate(), user()
    ring = KeyRing(pg_pool, master, cache_seconds=0)  # every call reads the table again
    first = (await ring.keys_for_write([u]))[u]
    again = (await ring.keys_for_read([u]))[u]
    assert again is first  # not unwrapped and derived again
    assert await KeyRing(pg_pool, master).destroy(u) is True  # another process forgets the user
    assert await ring.keys_for_read([u]) == {u: None}
    with pytest.raises(UserWasForgotten):
        await ring.keys_for_write([u])
    assert u in ring._destroyed and u not in ring._cache  # destroyed is cached for good


async def test_a_rewrapped_key_is_unwrapped_again(pg_pool: asyncpg.Pool) -> None:
    old, new, u = MasterKey.generate(), MasterKey.generate(), user()
    ring = KeyRing(pg_pool, new, cache_seconds=0)
    first = (await KeyRing(pg_pool, old).keys_for_write([u]))[u]
    stored = await pg_pool.fetchval("SELECT wrapped FROM memsaga.data_keys WHERE user_id = $1", u)
    secret = old.unwrap(u, bytes(stored))
    await pg_pool.execute(
        "UPDATE memsaga.data_keys SET wrapped = $2, master_key_id = $3 WHERE user_id = $1",
        u, new.wrap(u, secret), new.key_id,
    )  # fmt: skip
    read = (await ring.keys_for_read([u]))[u]
    assert read is not None and read.secret == first.secret


class CountingPool:
    """The pool's ``fetch``, counting the key lookups and the users each one asked for."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.lookups: list[list[str]] = []

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.lookups.append(sorted(args[0]))
        return await self.pool.fetch(query, *args)


def expire(ring: KeyRing) -> None:
    for entry in ring._cache.values():
        entry.until = 0.0


async def test_a_lookup_reads_again_the_expired_keys_in_use_and_drops_the_others(
    pg_pool: asyncpg.Pool,
) -> None:
    master, a, b, idle, c = MasterKey.generate(), user(), user(), user(), user()
    await KeyRing(pg_pool, master).keys_for_write([a, b, idle, c])
    counting = CountingPool(pg_pool)
    ring = KeyRing(counting, master)  # type: ignore[arg-type]
    await ring.keys_for_read([a, b, idle])
    await ring.keys_for_write([a, b])  # served from the cache: a and b are in use
    expire(ring)
    assert await KeyRing(pg_pool, master).destroy(b) is True  # meanwhile, b is forgotten elsewhere
    keys = await ring.keys_for_write([a])
    assert list(keys) == [a] and counting.lookups[-1] == sorted([a, b])  # one round trip for both
    assert idle not in ring._cache  # expired and not used: dropped, read again when asked for
    assert await ring.keys_for_read([b]) == {b: None} and len(counting.lookups) == 2  # seen destroyed
    with pytest.raises(UserWasForgotten):
        await ring.keys_for_write([b])
    assert (await ring.keys_for_read([c]))[c] is not None and counting.lookups[-1] == [c]
