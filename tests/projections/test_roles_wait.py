"""Each role started while a service it needs is down waits (saying so once), and a SIGTERM
during the wait or mid-run stops it cleanly: exit 0, no traceback."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest

from projections import MEMORIES
from tests.projections.conftest import Env, applied, relay_position, wait_until
from tests.projections.histories import append_all, make_history
from tests.projections.roles import Role, dead_address
from tests.projections.test_nats_outage import OwnNats

pytestmark = pytest.mark.services  # runs roles as processes (some against real services)


@pytest.mark.parametrize(
    ("args", "waits_for"),
    [(("relay",), "PostgreSQL"), (("project", "memories"), "PostgreSQL"), (("worker",), "Temporal")],
)
async def test_a_role_waits_for_a_missing_service_and_stops_on_sigterm(
    tmp_path: Path, args: tuple[str, ...], waits_for: str
) -> None:
    nowhere = dead_address()
    environ = {
        "MEMSAGA_DATABASE_URL": f"postgresql://postgres:secret@{nowhere}/memsaga",
        "MEMSAGA_NATS_URL": f"nats://{nowhere}",
        "MEMSAGA_TEMPORAL_ADDRESS": nowhere,
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
    }
    role = Role(tmp_path, environ, *args)
    try:
        await role.said(f"waiting for {waits_for} at")
        await role.said("retrying with backoff")
        assert "secret" not in role.output()  # the password stays out of the logs
        role.assert_clean_exit(await role.terminate())
    finally:
        role.kill()
    assert role.count(f"waiting for {waits_for} at") == 1  # once, not once per attempt


async def test_relay_and_projector_wait_for_nats_then_work_and_stop_cleanly(env: Env, tmp_path: Path) -> None:
    server = OwnNats(tmp_path)  # its port is chosen, nothing listens on it yet
    environ = {
        "MEMSAGA_DATABASE_URL": env.dsn,
        "MEMSAGA_NATS_URL": server.url,
        "MEMSAGA_NATS_STREAM": env.stream,
        "MEMSAGA_SUBJECT_PREFIX": env.prefix,
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        "MEMSAGA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
    }
    relay = Role(tmp_path, environ, "relay")
    projector = Role(tmp_path, environ, "project", "memories")
    history = make_history(seed=71, sagas=6)
    try:
        await relay.said(f"waiting for NATS at {server.url}")
        await projector.said(f"waiting for NATS at {server.url}")
        await server.start()
        await relay.said("connected to NATS")
        await projector.said("connected to NATS")

        await append_all(env.store, history)
        head = await env.store.head_position()
        await wait_until(lambda: _at(relay_position(env.pool, env.stream), head), what="relayed", timeout=60)
        want = history.count(MEMORIES.event_types)
        await wait_until(lambda: _at(applied(env.pool, MEMORIES.name), want), what="projected", timeout=60)

        await append_all(env.store, make_history(seed=72, sagas=6))  # in flight when SIGTERM comes
        relay.assert_clean_exit(await relay.terminate())
        server.stop()  # the projector printed a traceback when stopped while NATS was away
        await projector.said("disconnected from")
        projector.assert_clean_exit(await projector.terminate())
    finally:
        relay.kill()
        projector.kill()
        server.stop()
    assert "relay stopped at position" in relay.output()


async def _at(value: Awaitable[int], want: int) -> bool:
    return await value >= want
