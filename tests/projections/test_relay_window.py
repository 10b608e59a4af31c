"""The relay's publish window (issue 19): batches go out while earlier acks are outstanding, the
checkpoint moves in order over fully acked batches only, and on any failure everything after it
is sent again (JetStream drops what it had stored as duplicates)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck

from projections import Relay
from projections import relay as relay_module
from projections.subjects import POSITION
from tests.projections.conftest import Env, background, relay_position, wait_until
from tests.projections.histories import append_all, make_history
from tests.projections.test_failpoints import message_ids
from tests.projections.test_relay import stream_messages

BATCH = 7
WINDOW = 3


class WatchedJetStream:
    """A real JetStream context that records, per message sent, its position and the relay's
    checkpoint at that moment. It can fail the first send of chosen positions (the ack reports a
    timeout; nothing reaches JetStream), leave their first ack unanswered (nothing sent either),
    and hold every ack back until :attr:`released` is set."""

    def __init__(
        self, env: Env, *, fail_once: Iterable[int] = (), silent_once: Iterable[int] = (), hold: bool = False
    ) -> None:
        self.env = env
        self.fail_once = set(fail_once)
        self.silent_once = set(silent_once)
        self.sent: list[tuple[int, int]] = []  # (position, checkpoint when it was sent)
        self.acks: list[asyncio.Future[PubAck]] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env.js, name)

    def outstanding(self) -> int:
        """Acks handed out and not in yet."""
        return sum(not ack.done() for ack in self.acks)

    async def publish_async(self, subject: str, payload: bytes, **kwargs: Any) -> asyncio.Future[PubAck]:
        position = int(kwargs["headers"][POSITION])
        self.sent.append((position, await relay_position(self.env.pool, self.env.stream)))
        loop = asyncio.get_running_loop()
        if position in self.fail_once:
            self.fail_once.discard(position)
            failed: asyncio.Future[PubAck] = loop.create_future()
            failed.set_exception(nats.errors.TimeoutError())
            return failed
        if position in self.silent_once:
            self.silent_once.discard(position)
            return loop.create_future()  # never answered
        sent: asyncio.Future[PubAck] = await self.env.js.publish_async(subject, payload, **kwargs)

        async def held() -> PubAck:
            await self.released.wait()
            return await sent

        ack = asyncio.ensure_future(held())
        self.acks.append(ack)
        return ack


def watched_relay(env: Env, watched: WatchedJetStream, **config: Any) -> Relay:
    config = {"batch_size": BATCH, "max_in_flight": WINDOW, "initial_backoff": 0.01, **config}
    return Relay(env.store, cast(JetStreamContext, watched), env.relay_config(**config))


def batch_start(position: int) -> int:
    """The position before ``position``'s batch (batches are 1-7, 8-14, … while nothing fails)."""
    return (position - 1) // BATCH * BATCH


async def stored_ids(env: Env) -> list[str]:
    return [str(e.event_id) for batch in [b async for b in env.store.read_all()] for e in batch]


async def test_batches_go_out_while_earlier_acks_are_outstanding_and_the_checkpoint_follows_in_order(
    env: Env,
) -> None:
    await append_all(env.store, make_history(seed=10, sagas=6))
    head = await env.store.head_position()
    assert head > 4 * BATCH
    watched = WatchedJetStream(env, hold=True)
    relay = watched_relay(env, watched)
    async with background() as bg:
        done = bg.start(lambda _: relay.run(to_position=head))
        await wait_until(lambda: _sent(watched, WINDOW * BATCH), what="a full window sent", bg=bg)
        await asyncio.sleep(0.3)
        # The window is full: three batches out, not one acked, none checkpointed, no fourth sent.
        assert [p for p, _ in watched.sent] == list(range(1, WINDOW * BATCH + 1))
        assert watched.outstanding() == WINDOW * BATCH
        assert await relay_position(env.pool, env.stream) == 0
        watched.released.set()
        stats = await done

    # Each message went out at most WINDOW - 1 batches ahead of the checkpoint, never behind it.
    for position, checkpoint in watched.sent:
        assert batch_start(position) - (WINDOW - 1) * BATCH <= checkpoint <= batch_start(position)
    assert [p for p, _ in watched.sent] == list(range(1, head + 1))
    assert (stats.published, stats.duplicates, stats.retries, stats.position) == (head, 0, 0, head)
    assert await relay_position(env.pool, env.stream) == head
    assert await message_ids(env.js, env.stream) == await stored_ids(env)  # each once, in order


@pytest.mark.parametrize("failure", ["failed", "unanswered"])
async def test_an_ack_that_fails_or_never_comes_sends_everything_after_the_checkpoint_again(
    env: Env, failure: str
) -> None:
    await append_all(env.store, make_history(seed=11, sagas=6))
    head = await env.store.head_position()
    failing = {10}  # in the second batch
    watched = (
        WatchedJetStream(env, fail_once=failing)
        if failure == "failed"
        else WatchedJetStream(env, silent_once=failing)
    )
    relay = watched_relay(env, watched, publish_timeout=0.5)
    stats = await relay.run(to_position=head)

    positions = [p for p, _ in watched.sent]
    resent = positions.index(BATCH + 1, BATCH + 1)  # where position 8 went out again
    last_before = positions[resent - 1]
    # Up to a window beyond the checkpoint (the first batch, acked) went out before the failure
    # showed; then everything after the checkpoint again.
    assert positions[:resent] == list(range(1, last_before + 1))
    assert 2 * BATCH <= last_before <= BATCH + WINDOW * BATCH
    assert positions[resent:] == list(range(BATCH + 1, head + 1))
    assert all(checkpoint == BATCH for p, checkpoint in watched.sent[resent : resent + BATCH])
    # What JetStream had stored of it came back as duplicates; position 10 was stored now.
    assert (stats.retries, stats.published, stats.duplicates) == (1, head, last_before - BATCH - 1)
    assert await relay_position(env.pool, env.stream) == head
    assert sorted(int(h[POSITION]) for _, h, _ in await stream_messages(env)) == list(range(1, head + 1))


async def test_a_failed_checkpoint_commit_sends_the_window_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append_all(env.store, make_history(seed=12, sagas=6))
    head = await env.store.head_position()
    save, failed = relay_module.save_checkpoint, []

    async def failing_once(pool: Any, stream: str, position: int, published: int) -> None:
        if not failed:
            failed.append(position)
            raise ConnectionResetError("PostgreSQL went away")
        await save(pool, stream, position, published)

    monkeypatch.setattr(relay_module, "save_checkpoint", failing_once)
    watched = WatchedJetStream(env)
    stats = await watched_relay(env, watched).run(to_position=head)

    positions = [p for p, _ in watched.sent]
    resent = positions.index(1, 1)
    assert positions[resent:] == list(range(1, head + 1))  # nothing was checkpointed: from the start
    assert stats.retries == 1 and stats.published == head
    assert stats.duplicates == resent  # everything sent before the failure was stored already
    assert await relay_position(env.pool, env.stream) == head
    assert await message_ids(env.js, env.stream) == await stored_ids(env)


async def test_stopping_checkpoints_what_is_in_flight(env: Env) -> None:
    await append_all(env.store, make_history(seed=13, sagas=6))
    watched = WatchedJetStream(env, hold=True)
    relay = Relay(
        env.store,
        cast(JetStreamContext, watched),
        env.relay_config(batch_size=BATCH, max_in_flight=WINDOW),
        listen_dsn=env.dsn,
    )
    async with background() as bg:
        done = bg.start(relay.run)
        await wait_until(lambda: _sent(watched, WINDOW * BATCH), what="a full window sent", bg=bg)
        bg.stop.set()
        watched.released.set()
        stats = await done
    assert [p for p, _ in watched.sent] == list(range(1, WINDOW * BATCH + 1))
    assert stats.position == WINDOW * BATCH == await relay_position(env.pool, env.stream)
    assert stats.published == WINDOW * BATCH


async def _sent(watched: WatchedJetStream, count: int) -> bool:
    return len(watched.sent) >= count


async def test_caught_up_a_partial_batch_waits_for_the_one_in_flight(env: Env) -> None:
    history = make_history(seed=14, sagas=1)
    first, more = history.appends[0], history.appends[1:3]
    assert len(first.events) < BATCH
    watched = WatchedJetStream(env, hold=True)
    relay = watched_relay(env, watched)  # max_in_flight_caught_up: 1 (the default)
    async with background() as bg:
        bg.start(relay.run)
        await env.store.append(first.stream_id, first.events)
        await wait_until(lambda: _sent(watched, len(first.events)), what="the first batch sent", bg=bg)
        for append in more:
            await env.store.append(append.stream_id, append.events)
        await asyncio.sleep(0.5)
        assert len(watched.sent) == len(first.events)  # the rest waits for the first batch's ack
        watched.released.set()
        total = len(first.events) + sum(len(a.events) for a in more)
        await wait_until(lambda: _checkpoint_at(env, total), what="everything checkpointed", bg=bg)
    assert [p for p, _ in watched.sent] == list(range(1, total + 1))


async def _checkpoint_at(env: Env, position: int) -> bool:
    return await relay_position(env.pool, env.stream) >= position
