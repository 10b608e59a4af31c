"""Relay fail-over (issue 19): two relays run, one publishes, the other stands by and takes over
within 5 s when the leader is killed mid-stream; JetStream ends with every event once, in order.
Relays run as processes (``memsaga relay``)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.projections.conftest import Env, background, wait_until
from tests.projections.histories import append_all, make_history
from tests.projections.roles import Role
from tests.projections.test_failpoints import message_ids, role_env

pytestmark = pytest.mark.services

LEADING = "leading (holds the relay lease)"
STANDING_BY = "standing by, another relay publishes"


async def stream_count(env: Env) -> int:
    try:
        return (await env.js.stream_info(env.stream)).state.messages
    except Exception:  # the stream does not exist yet
        return 0


async def test_a_standby_relay_takes_over_from_a_killed_leader_losing_and_doubling_nothing(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    await append_all(env.store, make_history(seed=19, sagas=6))
    environ = role_env(env, nats_url, tmp_path, MEMSAGA_RELAY_BATCH_SIZE="5")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = Role(tmp_path / "a", environ, "relay")
    await first.said(LEADING)
    second = Role(tmp_path / "b", environ, "relay")
    try:
        await second.said(STANDING_BY)
        assert LEADING not in second.output()

        async def keep_appending(stop: asyncio.Event) -> None:
            seed = 100
            while not stop.is_set():
                await append_all(env.store, make_history(seed=seed, sagas=1))
                seed += 1
                await asyncio.sleep(0.05)

        async with background() as tasks:
            tasks.start(keep_appending)
            await wait_until(lambda: _at_least(env, 40), timeout=60, what="40 messages", bg=tasks)
            first.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.to_thread(first.proc.wait, 30)
            await second.said(LEADING, timeout=10)
            took_over = time.monotonic() - killed_at
            await asyncio.sleep(1.0)  # appends go on under the new leader
        assert took_over < 5.0, f"the standby took {took_over:.1f}s to lead"

        events = [e for batch in [b async for b in env.store.read_all()] for e in batch]
        wanted = [str(e.event_id) for e in events]
        await wait_until(lambda: _at_least(env, len(wanted)), timeout=60, what="every event published")
        # Every event once (the messages' Nats-Msg-Id), in position order, across the handover.
        assert await message_ids(env.js, env.stream) == wanted
    finally:
        for role in (first, second):
            if role.proc.poll() is None:
                await role.terminate()
    assert second.proc.returncode == 0, second.output()
    assert "Traceback" not in second.output()


async def _at_least(env: Env, count: int) -> bool:
    return await stream_count(env) >= count


async def test_a_bounded_republish_runs_beside_the_leader_without_the_lease(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    await append_all(env.store, make_history(seed=29, sagas=2))
    head = await env.store.head_position()
    environ = role_env(env, nats_url, tmp_path)
    for name in ("live", "range"):
        (tmp_path / name).mkdir()
    leader = Role(tmp_path / "live", environ, "relay")
    try:
        await leader.said(LEADING)
        republish = Role(
            tmp_path / "range", environ, "relay", "--from-position", "1", "--to-position", str(head)
        )
        code = await asyncio.to_thread(republish.proc.wait, 60)
        assert code == 0, republish.output()
        assert STANDING_BY not in republish.output() and LEADING not in republish.output()
    finally:
        await leader.terminate()
