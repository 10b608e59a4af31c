"""`dev up` brings a stopped service back on the port it had; when that port is taken, it says so."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from memsaga.cli.app import app
from memsaga.devstack import down, moved, probe, stop_service, up
from memsaga.devstack.ports import LOCALHOST
from memsaga.settings import Settings
from memsaga.stackstate import StackState, load_stack_state
from tests.devstack.test_stack import isolated_settings

pytestmark = pytest.mark.services


@pytest_asyncio.fixture(loop_scope="session")
async def nats_only(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> AsyncIterator[tuple[Settings, StackState]]:
    """A stack whose NATS `up` starts (PostgreSQL and Temporal are the session's, reused)."""
    settings = isolated_settings(
        tmp_path / ".memsaga", database_url=postgres_url, temporal_address=temporal_address
    )
    state = await up(settings, prefer_default_ports=False)
    try:
        yield settings, state
    finally:
        await down(settings)


@pytest.mark.parametrize("name", ["postgres", "nats", "temporal"])
async def test_a_stopped_service_comes_back_on_its_port(
    name: str, tmp_path: Path, postgres_url: str, nats_url: str, temporal_address: str
) -> None:
    named = {"database_url": postgres_url, "nats_url": nats_url, "temporal_address": temporal_address}
    del named[{"postgres": "database_url", "nats": "nats_url", "temporal": "temporal_address"}[name]]
    settings = isolated_settings(tmp_path / ".memsaga", **named)  # `up` starts only `name`
    first = await up(settings, prefer_default_ports=False)
    try:
        before = first.services[name]
        assert before.managed and [s.name for s in first.services.values() if s.managed] == [name]

        stop_service(before)
        assert await probe(name, before.url) is not None
        again = await up(settings, prefer_default_ports=False)

        after = again.services[name]
        assert after.pid != before.pid and (after.url, after.ui_url) == (before.url, before.ui_url)
        assert await probe(name, before.url) is None  # where running processes look for it
        assert moved(first, again) == []
    finally:
        await down(settings)


async def test_when_its_port_is_taken_up_says_which_processes_to_restart(
    nats_only: tuple[Settings, StackState],
) -> None:
    settings, first = nats_only
    before = first.services["nats"]
    stop_service(before)
    squatter = socket.socket()
    try:
        squatter.bind((LOCALHOST, urlsplit(before.url).port or 0))
        squatter.listen()
        environ = {
            "MEMSAGA_STATE_DIR": str(settings.state_dir),
            "MEMSAGA_DATABASE_URL": settings.database_url,
            "MEMSAGA_TEMPORAL_ADDRESS": settings.temporal_address,
            "MEMSAGA_NATS_URL": None,
            "COLUMNS": "400",
        }
        result = await asyncio.to_thread(CliRunner().invoke, app, ["dev", "up"], env=environ)
    finally:
        squatter.close()
    after = load_stack_state(settings.state_dir).services["nats"]
    assert result.exit_code == 0, result.output
    assert after.url != before.url and await probe("nats", after.url) is None
    note = f"nats came back at {after.url}, not at {before.url} (that port is taken)"
    assert note in " ".join(result.stderr.split()), result.stderr
    assert "restart memsaga relay, memsaga project" in " ".join(result.stderr.split())
