"""Benchmark 3: the outbox relay, events/s from the store into JetStream.

* memsaga: ``Relay.run(to_position=…)`` over the first ``relay_events`` events of the data
  set: gap-safe tail, envelope → JSON body and headers, pipelined publishes with
  ``Nats-Msg-Id``, every ack awaited, checkpoint saved per batch.
* baseline: plain nats-py publishing the same messages (same subjects, bodies and headers,
  built beforehand) in batches of the same size, all in flight at once through
  ``publish_async`` (the fastest plain way: one ack future per message, no task per
  message), every ack awaited.

Each round publishes into a new stream (deleted afterwards), so no side meets the other's
duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bench.context import BenchContext
from bench.harness import Deliveries, Stopwatch, interleaved, rate
from bench.results_model import Figure, Measurement, Target
from eventstore import PostgresEventStore
from projections import Relay, RelayConfig, connect_nats, ensure_stream
from projections.subjects import event_body, event_headers, event_subject

Message = tuple[str, bytes, dict[str, str]]  # (subject after the prefix, body, headers)


async def messages(store: PostgresEventStore, count: int) -> list[Message]:
    """What the relay publishes for the first ``count`` events, built once for the baseline."""
    built: list[Message] = []
    async for batch in store.read_all(batch_size=1000):
        for event in batch[: count - len(built)]:
            built.append((event_subject(event, ""), event_body(event), event_headers(event)))
        if len(built) >= count:
            break
    return built


async def publish_plain(
    js: JetStreamContext, stream: str, prefix: str, batch_size: int, msgs: list[Message]
) -> None:
    """Publish ``msgs`` in pipelined batches, awaiting every ack (raises on the first failure)."""
    for start in range(0, len(msgs), batch_size):
        acks = [
            await js.publish_async(prefix + subject, body, stream=stream, headers=headers)
            for subject, body, headers in msgs[start : start + batch_size]
        ]
        await asyncio.gather(*acks)


async def drop_stream(js: JetStreamContext, name: str) -> None:
    """Delete a benchmark stream (gone already is fine)."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)


async def relay_to(
    store: PostgresEventStore, js: JetStreamContext, config: RelayConfig, to: int
) -> tuple[float, int]:
    """Run memsaga's relay into ``config.stream`` (created first) up to position ``to``.

    Returns the seconds it took and the messages the stream then holds.
    """
    await ensure_stream(js, config.stream, subject_prefix=config.subject_prefix)
    with Stopwatch() as sw:
        stats = await Relay(store, js, config).run(to_position=to)
    if stats.position != to:
        raise RuntimeError(f"the relay stopped at {stats.position}, not {to}")
    return sw.seconds, (await js.stream_info(config.stream)).state.messages


async def run(ctx: BenchContext) -> list[Figure]:
    """Relay the first ``relay_events`` events both ways, alternating."""
    data = await ctx.dataset()
    count = min(ctx.sizes.relay_events, data.events)
    batch = ctx.settings.relay_batch_size
    nc: NATS = await connect_nats(ctx.settings.require_nats_url(), name="memsaga-bench")
    js = nc.jetstream()
    try:
        async with ctx.store(data.dsn) as store:
            msgs = await messages(store, count)
            to = await store.pool.fetchval(
                "SELECT position FROM memsaga.events ORDER BY position OFFSET $1 LIMIT 1", count - 1
            )

            deliveries = Deliveries()

            async def memsaga(_: int) -> float:
                stream, prefix = ctx.unique_stream("relay")
                config = RelayConfig(stream=stream, subject_prefix=prefix, batch_size=batch)
                try:
                    seconds, published = await relay_to(store, js, config, to)
                    deliveries.record(published, count)
                    return rate(count, seconds)
                finally:
                    await drop_stream(js, stream)

            async def baseline(_: int) -> float:
                stream, prefix = ctx.unique_stream("plain")
                await ensure_stream(js, stream, subject_prefix=prefix)
                try:
                    with Stopwatch() as sw:
                        await publish_plain(js, stream, prefix, batch, msgs)
                finally:
                    await drop_stream(js, stream)
                return rate(count, sw.seconds)

            ctx.progress.start("relay", ctx.sizes.relay_rounds * 2)
            samples = await interleaved(
                ctx.sizes.relay_rounds, {"memsaga": memsaga, "nats": baseline}, ctx.progress.advance
            )
    finally:
        await nc.close()
    return [
        Figure.compare(
            "relay.publish",
            benchmark="relay",
            title="relay: store → JetStream vs plain nats-py publish with acks",
            unit="events/s",
            subject=Measurement.of("memsaga Relay", samples["memsaga"]),
            baseline=Measurement.of("nats-py publish_async", samples["nats"]),
            target=Target(kind="ratio_at_least", threshold=0.5, text=">= 0.5x plain publish"),
            size=f"{count:,} events per round, batches of {batch}",
            delivered=deliveries.worst,
        )
    ]
