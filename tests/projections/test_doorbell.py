"""The relay's doorbell: appends notify only while a relay has caught up and waits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from projections.wakeup import CHANNEL, AppendWakeup
from tests.projections.conftest import Env, background, relay_position, wait_until
from tests.projections.histories import append_all, make_history


async def _armed(env: Env) -> list[bool]:
    rows = await env.pool.fetch("SELECT armed FROM memsaga.relay_doorbells ORDER BY stream")
    return [r["armed"] for r in rows]


async def _listener(env: Env) -> tuple[asyncpg.Connection, list[Any]]:
    heard: list[Any] = []
    conn = await asyncpg.connect(env.dsn)
    await conn.add_listener(CHANNEL, lambda *args: heard.append(args))
    return conn, heard


async def test_appends_do_not_notify_while_no_doorbell_is_armed(env: Env) -> None:
    conn, heard = await _listener(env)
    try:
        history = make_history(seed=11, sagas=2)
        await append_all(env.store, history)
        await asyncio.sleep(0.3)
        assert heard == []  # nobody waits: no notification, no notify lock at commit

        wakeup = AppendWakeup(env.dsn, doorbell="S1")
        assert await wakeup.arm() is True
        assert await wakeup.arm() is False  # already armed: no second write
        assert await _armed(env) == [True]
        await append_all(env.store, make_history(seed=12, sagas=1))
        await wait_until(lambda: _heard(heard), timeout=5, what="a notification")
        await _drain(env, heard)  # every notification of those appends is in before `clear`

        await wakeup.disarm()
        assert await _armed(env) == [False]
        heard.clear()
        await append_all(env.store, make_history(seed=13, sagas=1))
        await asyncio.sleep(0.3)
        assert heard == []

        await wakeup.arm()
        await wakeup.close()  # a relay that stops disarms its bell
        assert await _armed(env) == [False]
    finally:
        await conn.close()


async def test_any_armed_doorbell_makes_appends_notify(env: Env) -> None:
    conn, heard = await _listener(env)
    first, second = AppendWakeup(env.dsn, doorbell="S1"), AppendWakeup(env.dsn, doorbell="S2")
    try:
        await first.arm()
        await second.arm()
        await first.disarm()
        await append_all(env.store, make_history(seed=14, sagas=1))
        await wait_until(lambda: _heard(heard), timeout=5, what="a notification")
    finally:
        await first.close()
        await second.close()
        await conn.close()


async def test_the_relay_arms_when_caught_up_and_disarms_when_it_stops(env: Env) -> None:
    history = make_history(seed=15, sagas=30)
    await append_all(env.store, history)
    head = await env.store.head_position()
    async with background() as bg:
        bg.start(env.relay(batch_size=16).run)
        await wait_until(lambda: _relayed(env, head), timeout=30, what="relay caught up", bg=bg)
        await wait_until(lambda: _armed_all(env), timeout=5, what="doorbell armed", bg=bg)
    assert await _armed(env) == [False]


async def _relayed(env: Env, head: int) -> bool:
    return await relay_position(env.pool, env.stream) >= head


async def _heard(heard: list[Any]) -> bool:
    return bool(heard)


async def _drain(env: Env, heard: list[Any]) -> None:
    """Wait until a notification sent now arrives: PostgreSQL delivers a channel's notifications
    to a listener in commit order, so every earlier one has arrived by then."""
    await env.pool.execute("SELECT pg_notify($1, 'sentinel')", CHANNEL)

    async def sentinel() -> bool:
        return any(args[-1] == "sentinel" for args in heard)

    await wait_until(sentinel, timeout=5, what="the sentinel notification")


async def _armed_all(env: Env) -> bool:
    return await _armed(env) == [True]


async def test_appends_never_pay_for_a_jit_compiled_doorbell_check(env: Env) -> None:
    """append_events plans with enable_seqscan = off, and so does the trigger it fires: the
    doorbell check must have an index path (a forced scan is costed past jit_above_cost), and
    appends must not JIT-compile at all."""
    async with env.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT EXISTS (SELECT 1 FROM memsaga.relay_doorbells WHERE armed)"
        )
    cost = json.loads(plan)[0]["Plan"]["Total Cost"]
    assert cost < 1000, f"doorbell check costed at {cost}: no index path under enable_seqscan = off"
    for function in ("memsaga.append_events", "memsaga.append_event"):
        config = await env.pool.fetchval("SELECT proconfig FROM pg_proc WHERE oid = $1::regproc", function)
        assert "jit=off" in config and "enable_seqscan=off" in config, function
