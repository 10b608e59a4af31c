"""Stream provisioning against a real JetStream: created without limits, limits refused loudly."""

from __future__ import annotations

import logging

import pytest
from nats.js.api import StorageType

from projections import StreamHasLimits, StreamSubjectsMismatch, ensure_stream
from projections.stream import stream_config
from tests.projections.conftest import Env


async def test_a_missing_stream_is_created_with_file_storage_and_no_limits(env: Env) -> None:
    info = await ensure_stream(env.js, env.stream, subject_prefix=env.prefix, duplicate_window=90)
    config = (await env.js.stream_info(env.stream)).config
    assert info.config.name == env.stream
    assert config.storage == StorageType.FILE and config.subjects == [f"{env.prefix}.>"]
    assert (config.max_msgs, config.max_bytes, config.max_age, config.max_msgs_per_subject) == (-1, -1, 0, -1)
    assert config.duplicate_window == 90
    assert (await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)).config.name == env.stream


async def test_a_stream_with_limits_is_refused_unless_accepted(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    limited = stream_config(env.stream, env.prefix, 60)
    limited.max_bytes = 10_000_000
    await env.js.add_stream(limited)
    with pytest.raises(StreamHasLimits, match="max_bytes=10000000"):
        await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    with caplog.at_level(logging.WARNING):
        info = await ensure_stream(env.js, env.stream, subject_prefix=env.prefix, accept_limits=True)
    assert info.config.max_bytes == 10_000_000  # accepted, not changed behind the operator's back
    assert "silently drop history" in caplog.text and "max_bytes=10000000" in caplog.text


async def test_a_stream_on_other_subjects_is_refused(env: Env) -> None:
    await env.js.add_stream(stream_config(env.stream, env.prefix + "x", 60))
    with pytest.raises(StreamSubjectsMismatch, match="MEMSAGA_SUBJECT_PREFIX"):
        await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
