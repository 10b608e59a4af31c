"""`up` / `status` / `down` against real servers started in a temporary state dir (no mocks).

One stack is shared by the module; the tests run in file order and the last one stops it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from memsaga.devstack import (
    SEARCH_ATTRIBUTES,
    ServiceUnreachable,
    StackConflict,
    down,
    probe_nats,
    start_nats,
    status,
    stop_service,
    up,
)
from memsaga.devstack.nats import monitoring_url
from memsaga.devstack.ports import free_port
from memsaga.devstack.process import pid_alive, terminate
from memsaga.devstack.temporal import connect
from memsaga.settings import Settings
from memsaga.stackstate import StackState, load_stack_state

pytestmark = pytest.mark.services  # starts its own stack with `memsaga dev up`

SERVICES = ["postgres", "nats", "temporal"]


def isolated_settings(state_dir: Path, **urls: Any) -> Settings:
    """Settings that ignore MEMSAGA_* variables of the environment running the tests."""
    fields: dict[str, Any] = {"database_url": None, "nats_url": None, "temporal_address": None}
    return Settings(state_dir=state_dir, temporal_ui_url=None, **(fields | urls))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return isolated_settings(tmp_path_factory.mktemp("stack") / ".memsaga")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(settings: Settings) -> AsyncIterator[StackState]:
    started = time.monotonic()
    state = await up(settings, prefer_default_ports=False)
    print(f"stack up in {time.monotonic() - started:.1f}s")
    try:
        yield state
    finally:
        await down(settings)


async def test_up_starts_every_service(stack: StackState, settings: Settings) -> None:
    assert list(stack.services) == SERVICES
    for service in stack.services.values():
        assert service.managed
        assert pid_alive(service.pid)
        assert service.log_file is not None
        assert Path(service.log_file).is_file()
    assert load_stack_state(settings.state_dir) == stack


async def test_status_shows_each_service_up_with_its_url(stack: StackState, settings: Settings) -> None:
    services = await status(settings)
    assert [(s.name, s.up, s.managed, s.url) for s in services] == [
        (name, True, True, stack.services[name].url) for name in SERVICES
    ]
    assert services[2].ui_url == stack.services["temporal"].ui_url


async def test_postgres_accepts_connections_to_the_memsaga_database(stack: StackState) -> None:
    url = stack.services["postgres"].url
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "memsaga"
    finally:
        await conn.close()


async def test_nats_answers_with_jetstream(stack: StackState) -> None:
    client = await nats.connect(stack.services["nats"].url)
    try:
        info = await client.jetstream().account_info()
        assert info.limits is not None
    finally:
        await client.close()


async def test_jetstream_syncs_every_write_to_disk(stack: StackState) -> None:
    nats_state = stack.services["nats"]
    assert nats_state.data_dir is not None and nats_state.pid is not None
    monitoring = monitoring_url(Path(nats_state.data_dir), nats_state.pid)
    assert monitoring is not None

    async with httpx.AsyncClient() as http:
        varz = (await http.get(f"{monitoring}/varz", timeout=5)).json()

    assert varz["jetstream"]["config"]["sync_always"] is True
    assert varz["jetstream"]["config"]["store_dir"].startswith(nats_state.data_dir)


async def test_temporal_answers_with_search_attributes_and_ui(stack: StackState) -> None:
    temporal = stack.services["temporal"]
    client = await connect(temporal.url)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)
    assert temporal.ui_url is not None
    async with httpx.AsyncClient() as http:
        assert (await http.get(temporal.ui_url, timeout=10)).status_code == 200


async def test_up_again_is_a_no_op(stack: StackState, settings: Settings) -> None:
    again = await up(settings, prefer_default_ports=False)
    assert again == stack


async def test_up_restarts_a_service_that_died(stack: StackState, settings: Settings) -> None:
    old = stack.services["nats"]
    assert old.pid is not None
    terminate(old.pid)
    assert not (await status(settings))[1].up
    state = await up(settings, prefer_default_ports=False)
    assert state.services["nats"].pid != old.pid
    assert await probe_nats(state.services["nats"].url) is None
    assert state.services["postgres"] == stack.services["postgres"]
    stack.services["nats"] = state.services["nats"]


async def test_env_named_service_is_reused_and_left_running(stack: StackState, tmp_path: Path) -> None:
    own_nats = await start_nats(tmp_path / "nats")
    try:
        reuse = isolated_settings(
            tmp_path / ".memsaga",
            database_url=stack.services["postgres"].url,
            nats_url=own_nats.url,
            temporal_address=stack.services["temporal"].url,
        )
        state = await up(reuse, prefer_default_ports=False)
        assert {name: (s.url, s.managed, s.pid) for name, s in state.services.items()} == {
            "postgres": (stack.services["postgres"].url, False, None),
            "nats": (own_nats.url, False, None),
            "temporal": (stack.services["temporal"].url, False, None),
        }
        assert await down(reuse) == []
        assert await probe_nats(own_nats.url) is None
        assert [s.up for s in await status(reuse)] == [True, True, True]
    finally:
        stop_service(own_nats)


async def test_unreachable_env_service_fails_before_starting_anything(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, nats_url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnreachable, match="MEMSAGA_NATS_URL"):
        await up(settings, prefer_default_ports=False)
    assert load_stack_state(tmp_path).services == {}


async def test_env_naming_another_server_than_the_running_one_conflicts(
    stack: StackState, settings: Settings
) -> None:
    elsewhere = settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"})
    with pytest.raises(StackConflict, match="memsaga dev down"):
        await up(elsewhere, prefer_default_ports=False)


async def test_down_stops_what_up_started(stack: StackState, settings: Settings) -> None:
    stopped = await down(settings)
    assert sorted(s.name for s in stopped) == sorted(SERVICES)
    assert not any(pid_alive(s.pid) for s in stopped)
    assert [(s.name, s.up) for s in await status(settings)] == [(name, False) for name in SERVICES]
    assert load_stack_state(settings.state_dir).services == {}
