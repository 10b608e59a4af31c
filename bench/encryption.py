"""Benchmark 9: the cost of sealing personal data, appends and replay with encryption against the
same without, in one run (issue 17: both >= 0.85x).

``EVENTS`` ``MemoryCreated`` events (text, content hash, slot and value personal; the first two
indexed) of ``USERS`` users go, in ``WRITERS`` concurrent single-event appends, into two fresh
databases: one through memsaga's store with its vault (each field sealed with the user's data key,
AES-256-GCM; the keys made at the first write), one through the same store without a vault (plain
JSON). Rounds alternate the sides. Replay reads every event back in position order
(``read_all``): with the vault each sealed event is opened (keys cached), without it the plain
rows are decoded. Both sides must read back the same payloads.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bench.context import BenchContext
from bench.harness import Stopwatch, rate
from bench.results_model import Figure, Measurement, Target
from eventstore import NewEvent, PostgresEventStore, create_pool
from eventstore.keys import KeyRing, MasterKey
from eventstore.vault import Vault
from memsaga.bootstrap import build_registry
from sagas.memory_extraction.events import MemoryCreated

EVENTS_FULL, EVENTS_QUICK = 20_000, 2_000
USERS = 100
WRITERS = 8
TARGET = 0.85
AT = datetime(2026, 1, 1, tzinfo=UTC)


def memories(count: int, round_: int) -> list[tuple[str, NewEvent]]:
    """``count`` memories of :data:`USERS` users, each in its own stream."""
    made = []
    for i in range(count):
        user, memory_id = f"user-{i % USERS:03d}", f"m-{round_}-{i:06d}"
        payload = MemoryCreated(
            memory_id=memory_id, user_id=user, episode_id=f"ep-{i}", kind="fact",
            text=f"User {i} is allergic to peanuts and lives in Lisbon since {2000 + i % 25}",
            content_hash=f"{i:064x}", vector_sha256=None, dimension=None, embedder=None, source="chat",
            slot=f"residence-{i % 7}", value=f"Lisbon {i}",
        )  # fmt: skip
        event = NewEvent.of(
            payload, correlation_id=f"c-{memory_id}", causation_id="bench", occurred_at=AT, user_id=user
        )
        made.append((f"memory-{memory_id}", event))
    return made


async def append_all(store: PostgresEventStore, events: list[tuple[str, NewEvent]]) -> float:
    """Seconds to append ``events`` one per call, from :data:`WRITERS` concurrent writers."""

    async def writer(part: list[tuple[str, NewEvent]]) -> None:
        for stream, event in part:
            await store.append(stream, [event])

    with Stopwatch() as sw:
        await asyncio.gather(*(writer(events[w::WRITERS]) for w in range(WRITERS)))
    return sw.seconds


async def replay_all(store: PostgresEventStore) -> tuple[float, int, list[str]]:
    """Seconds to read every event back, how many, and every text read (sorted; not timed)."""
    count, batches = 0, []
    with Stopwatch() as sw:
        async for batch in store.read_all(batch_size=1000):
            count += len(batch)
            batches.append(batch)
    return sw.seconds, count, sorted(str(e.payload["text"]) for b in batches for e in b)


async def run(ctx: BenchContext) -> list[Figure]:
    """Append and replay on both sides, alternating rounds."""
    events = EVENTS_QUICK if ctx.sizes.rounds < 5 else EVENTS_FULL
    rounds = ctx.sizes.rounds
    ctx.progress.start(f"encryption: {events:,} events of {USERS} users per round", rounds * 4)
    registry = build_registry()
    appends: dict[str, list[float]] = {"sealed": [], "plain": []}
    replays: dict[str, list[float]] = {"sealed": [], "plain": []}
    async with ctx.database() as sealed_dsn, ctx.database() as plain_dsn:
        sealed_pool = await create_pool(sealed_dsn, min_size=WRITERS, max_size=WRITERS + 2)
        plain_pool = await create_pool(plain_dsn, min_size=WRITERS, max_size=WRITERS + 2)
        try:
            keyring = KeyRing(sealed_pool, MasterKey.generate())
            sides = {
                "sealed": PostgresEventStore(sealed_pool, registry, vault=Vault(registry, keyring)),
                "plain": PostgresEventStore(plain_pool, registry),
            }
            for r in range(rounds):
                batch = memories(events, r)
                order = ("sealed", "plain") if r % 2 == 0 else ("plain", "sealed")
                for side in order:
                    seconds = await append_all(sides[side], batch)
                    appends[side].append(rate(events, seconds))
                    ctx.progress.advance()
                for side in order:
                    seconds, count, _ = await replay_all(sides[side])
                    replays[side].append(rate(count, seconds))
                    ctx.progress.advance()
            _, sealed_count, sealed_texts = await replay_all(sides["sealed"])
            _, plain_count, plain_texts = await replay_all(sides["plain"])
            if (sealed_count, sealed_texts) != (plain_count, plain_texts):
                raise AssertionError("the sealed store did not read back what the plain one did")
            raw = await sealed_pool.fetchval("SELECT payload::text FROM memsaga.events LIMIT 1")
            if "peanuts" in raw:
                raise AssertionError("the sealed side stored plain text")
        finally:
            await sealed_pool.close()
            await plain_pool.close()
    notes = [
        f"{WRITERS} concurrent writers, one event per append; replay reads every event of the side"
        f" (it grows by {events:,} per round: {events:,} to {events * rounds:,})",
        "sealed: text, content hash, slot and value encrypted (AES-256-GCM, synthetic nonce), content"
        " hash and slot with a blind index; both sides read back the same payloads",
    ]
    size = f"{events:,} MemoryCreated events per round, {USERS} users, {rounds} rounds"
    return [
        Figure.compare(
            f"encryption.{name}",
            benchmark="encryption",
            title=f"{name} with personal fields sealed vs the same store without encryption",
            unit="events/s",
            subject=Measurement.of("PostgresEventStore with a vault", data["sealed"]),
            baseline=Measurement.of("PostgresEventStore without a vault", data["plain"]),
            target=Target(kind="ratio_at_least", threshold=TARGET, text=f">= {TARGET}x"),
            size=size,
            notes=notes,
        )
        for name, data in (("appends", appends), ("replay", replays))
    ]
