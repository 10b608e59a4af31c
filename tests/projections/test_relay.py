"""The outbox relay: order, subjects, headers, checkpoint after ack, de-duplicated re-sends, wake-ups."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry import trace

from eventstore import tracing as eventstore_tracing
from projections import Relay, StreamHasLimits
from projections import tracing as projections_tracing
from projections.partitioning import slot_of
from projections.stream import stream_config
from projections.subjects import (
    CAUSATION_ID,
    CORRELATION_ID,
    EVENT_TYPE,
    EVENT_VERSION,
    MSG_ID,
    POSITION,
    TRACEPARENT,
    decode_body,
)
from projections.wakeup import SETTLE_SECONDS
from tests.projections.conftest import Env, background, relay_position, wait_until
from tests.projections.histories import append_all, make_history


async def stream_messages(env: Env) -> list[tuple[str, dict[str, str], bytes]]:
    info = await env.js.stream_info(env.stream)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await env.js.get_msg(env.stream, seq)
        assert raw.subject is not None and raw.data is not None
        messages.append((raw.subject, dict(raw.headers or {}), raw.data))
    return messages


@pytest.fixture
def untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracing whatever provider another test installed: headers carry the stored context as is."""
    noop = trace.NoOpTracerProvider()
    for module in (eventstore_tracing, projections_tracing):
        monkeypatch.setattr(module.trace, "get_tracer", lambda name: noop.get_tracer(name))


@pytest.mark.usefixtures("untraced")
async def test_relay_publishes_every_event_in_order_with_subject_and_headers(env: Env) -> None:
    history = make_history(seed=1, sagas=4)
    await append_all(env.store, history)
    head = await env.store.head_position()
    async with background() as bg:
        bg.start(env.relay(batch_size=7).run)
        await wait_until(lambda: _at(env, head), what="relay checkpoint at head", bg=bg)

    messages = await stream_messages(env)
    stored = [e async for batch in env.store.read_all() for e in batch]
    assert len(messages) == len(stored) == len(history.events)
    for (subject, headers, data), event in zip(messages, stored, strict=True):
        assert subject == f"{env.prefix}.{event.category}.{event.event_type}.{slot_of(event.user_id)}"
        assert headers[MSG_ID] == str(event.event_id)
        assert headers[EVENT_TYPE] == event.event_type
        assert headers[EVENT_VERSION] == str(event.event_version)
        assert headers[CORRELATION_ID] == event.correlation_id
        assert headers[CAUSATION_ID] == event.causation_id
        assert headers[POSITION] == str(event.position)
        assert headers.get(TRACEPARENT) == event.metadata.get("traceparent")
        assert decode_body(data) == event
    assert any(TRACEPARENT in h for _, h, _ in messages) and not all(TRACEPARENT in h for _, h, _ in messages)


async def test_a_restart_resumes_from_the_checkpoint_and_re_sends_are_dropped(env: Env) -> None:
    await append_all(env.store, make_history(seed=2, sagas=3))
    head = await env.store.head_position()
    async with background() as bg:
        bg.start(env.relay().run)
        await wait_until(lambda: _at(env, head), what="first run done", bg=bg)
    assert (await env.js.stream_info(env.stream)).state.messages == head

    # A crash after JetStream acked but before the checkpoint moved: the restart re-sends them.
    await env.pool.execute("UPDATE memsaga.relay_checkpoints SET position = position - 10")
    more = make_history(seed=3, sagas=1)
    await append_all(env.store, more)
    new_head = await env.store.head_position()
    relay = env.relay()
    async with background() as bg:
        bg.start(relay.run)
        await wait_until(lambda: _at(env, new_head), what="second run done", bg=bg)
    assert relay.stats.published == 10 + len(more.events)
    assert relay.stats.duplicates == 10  # dropped by the stream's duplicate window
    assert (await env.js.stream_info(env.stream)).state.messages == new_head


async def test_republish_a_range_with_from_and_to_position(env: Env) -> None:
    await append_all(env.store, make_history(seed=4, sagas=2))
    head = await env.store.head_position()
    async with background() as bg:
        bg.start(env.relay().run)
        await wait_until(lambda: _at(env, head), what="relay done", bg=bg)
    # A stream that lost messages (say, an OS crash before fsync) is refilled from PostgreSQL.
    await env.js.purge_stream(env.stream)
    stats = await env.relay().run(from_position=3, to_position=8)
    assert (stats.published, stats.duplicates) == (6, 0)  # not dropped as duplicates: they were lost
    positions = [int(h[POSITION]) for _, h, _ in await stream_messages(env)]
    assert positions == [3, 4, 5, 6, 7, 8]
    assert await relay_position(env.pool, env.stream) == head  # a republish never moves the checkpoint back


async def test_from_position_beyond_the_checkpoint_is_refused(env: Env) -> None:
    await append_all(env.store, make_history(seed=9, sagas=1))
    with pytest.raises(ValueError, match=r"would skip positions 1\.\.4"):
        await env.relay().run(from_position=5)


async def test_notify_wakes_the_relay_long_before_its_poll_interval(env: Env) -> None:
    history = make_history(seed=5, sagas=1)
    async with background() as bg:
        bg.start(env.relay(poll_interval=30.0).run)
        await wait_until(lambda: _armed(env), what="relay listening, doorbell armed", bg=bg)
        await asyncio.sleep(SETTLE_SECONDS + 0.2)  # past the quick polls that follow arming
        started = time.monotonic()
        await env.store.append(history.appends[0].stream_id, history.appends[0].events)
        await wait_until(lambda: _at(env, 1), timeout=5, what="event published", bg=bg)
        latency = time.monotonic() - started
    assert latency < 2.0, f"published after {latency:.2f}s: NOTIFY did not wake the relay"


async def test_relay_refuses_a_stream_with_limits_unless_accepted(env: Env) -> None:
    limited = stream_config(env.stream, env.prefix, 60)
    limited.max_age, limited.max_msgs = 3600, 1000
    await env.js.add_stream(limited)
    with pytest.raises(StreamHasLimits) as refused:
        await env.relay().run()
    assert "max_age=3600s" in str(refused.value) and "max_msgs=1000" in str(refused.value)
    assert "--accept-stream-limits" in str(refused.value)
    assert await env.pool.fetchval("SELECT count(*) FROM memsaga.relay_checkpoints") == 0  # never started

    await append_all(env.store, make_history(seed=6, sagas=1))
    stats = await env.relay(accept_stream_limits=True).run(to_position=await env.store.head_position())
    assert stats.published == await env.store.head_position()


async def test_relay_throughput(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    history = make_history(seed=8, sagas=150)
    await append_all(env.store, history)
    head = await env.store.head_position()
    relay = Relay(env.store, env.js, env.relay_config(batch_size=256))
    started = time.monotonic()
    stats = await relay.run(to_position=head)
    seconds = time.monotonic() - started
    assert stats.published == head == len(history.events)
    with capsys.disabled():
        print(f"\nrelay: {head} events in {seconds:.2f}s = {head / seconds:.0f} events/s")


async def _at(env: Env, position: int) -> bool:
    return await relay_position(env.pool, env.stream) >= position


async def _armed(env: Env) -> bool:
    query = "SELECT armed FROM memsaga.relay_doorbells WHERE stream = $1"
    return bool(await env.pool.fetchval(query, env.stream))
