"""A runner refuses a NATS server that drops consumer subject filters (nats-server < 2.10)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig

from projections import MEMORIES
from projections.errors import ConsumerFiltersIgnored
from projections.runner import ProjectionRunner, _require_filters

OLD_NATS = "nats://127.0.0.1:4222"  # the machine's system NATS, when it is older than 2.10


def _fake_js(version: str) -> Any:
    return SimpleNamespace(_nc=SimpleNamespace(connected_server_version=version))


def _runner_config() -> ConsumerConfig:
    return ProjectionRunner(
        MEMORIES, store=SimpleNamespace(pool=None, registry=None), js=None
    ).consumer_config()  # type: ignore[arg-type]


def test_filters_kept_pass_and_filters_dropped_are_refused() -> None:
    wanted = _runner_config()
    # Each type twice: three-token subjects (written before slots) and four-token ones.
    assert wanted.filter_subjects and len(wanted.filter_subjects) == 2 * len(MEMORIES.event_types) > 2
    _require_filters(
        _fake_js("2.15.1"), wanted, ConsumerConfig(filter_subjects=list(reversed(wanted.filter_subjects)))
    )
    with pytest.raises(ConsumerFiltersIgnored, match=r"2\.9\.0.*nats-server 2\.10 or newer"):
        _require_filters(_fake_js("2.9.0"), wanted, ConsumerConfig())


async def test_a_real_pre_2_10_server_is_refused() -> None:
    try:
        nc = await nats.connect(OLD_NATS, connect_timeout=1, max_reconnect_attempts=0)
    except Exception:
        pytest.skip(f"no NATS at {OLD_NATS}")
    try:
        version = nc.connected_server_version
        if (version.major, version.minor) >= (2, 10):
            pytest.skip(f"NATS at {OLD_NATS} is {version}, which keeps filters")
        js = nc.jetstream()
        name = f"T_FILTERS_{uuid.uuid4().hex[:8]}"
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
        try:
            wanted = ConsumerConfig(
                durable_name="proj-x", filter_subjects=[f"{name.lower()}.a", f"{name.lower()}.b"]
            )
            info = await js.add_consumer(name, wanted)
            with pytest.raises(ConsumerFiltersIgnored, match="proj-x"):
                _require_filters(js, wanted, info.config)
        finally:
            await js.delete_stream(name)
    finally:
        await nc.close()
