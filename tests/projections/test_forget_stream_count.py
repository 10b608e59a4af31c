"""``memsaga forget --verify`` reads every stored message of the events stream, other users'
included, and counts the canary in the user's only (``memsaga.forget_verify.count_in_stream``)."""

from __future__ import annotations

import time

import orjson
import pytest

from memsaga.forget_verify import count_in_stream
from projections.stream import ensure_stream
from tests.projections.conftest import Env

pytestmark = pytest.mark.services


async def test_every_message_is_read_and_only_the_users_are_counted(env: Env) -> None:
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    bodies = [
        {"user_id": "ana", "payload": {"text": "I am allergic to peanuts"}},
        {"user_id": "ana", "payload": {"text": "I like tea"}},
        {"user_id": "bob", "payload": {"text": "I am allergic to peanuts too"}},
        {"user_id": "bob", "payload": {"text": "I like coffee"}},
    ]
    for body in bodies:
        await env.js.publish(f"{env.prefix}.memory.MemoryCreated", orjson.dumps(body), stream=env.stream)
    await env.js.publish(f"{env.prefix}.memory.MemoryCreated", b"not an envelope: peanuts", stream=env.stream)

    started = time.monotonic()
    counted = await count_in_stream(env.js, env.stream, "ana", "peanuts")

    assert (counted.count, counted.looked_at) == (2, 3)  # ana's two, and the body of nobody's
    assert time.monotonic() - started < 1.5  # it stops once every message is read (no fetch timeout)
