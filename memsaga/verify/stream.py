"""Every event in the event store up to the relay's checkpoint is in JetStream.

The stream is read with an ephemeral pull consumer that gets headers only (no bodies) and
acknowledges nothing, so it costs the stream nothing and disturbs no projection's consumer.
Events are matched by ``Memsaga-Event-Id`` (which a republish keeps), not by message id.
"""

from __future__ import annotations

import contextlib

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventstore import PostgresEventStore
from memsaga.verify.report import StreamCheck
from projections.subjects import EVENT_ID

FETCH_BATCH = 1000
FETCH_TIMEOUT = 5.0


async def stream_event_ids(js: JetStreamContext, stream: str, subjects: str) -> tuple[int, list[str]]:
    """The stream's message count and the event id of each message, up to its last sequence now
    (none when the stream does not exist: a relay never ran)."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return 0, []
    last = info.state.last_seq
    if info.state.messages == 0:
        return 0, []
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        headers_only=True,
        inactive_threshold=60.0,
        max_waiting=1,
    )
    sub = await js.pull_subscribe(subjects, stream=stream, config=config)
    ids: list[str] = []
    try:
        seq = 0
        while seq < last:
            try:
                batch = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT)
            except nats.errors.TimeoutError:
                break  # nothing more (messages up to `last` were deleted meanwhile)
            for msg in batch:
                seq = msg.metadata.sequence.stream
                ids.append((msg.headers or {}).get(EVENT_ID, ""))
    finally:
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
            await sub.unsubscribe()
    return info.state.messages, ids


async def check_stream(
    store: PostgresEventStore, js: JetStreamContext, stream: str, subjects: str, relayed_up_to: int
) -> StreamCheck:
    """Compare the stream with the store's events at positions up to ``relayed_up_to``."""
    messages, ids = await stream_event_ids(js, stream, subjects)
    in_stream: dict[str, int] = {}
    for event_id in ids:
        in_stream[event_id] = in_stream.get(event_id, 0) + 1
    known: set[str] = set()
    missing: list[int] = []
    checked = 0
    async for batch in store.read_all(after_position=0):
        for event in batch:
            event_id = str(event.event_id)
            known.add(event_id)
            if event.position <= relayed_up_to:
                checked += 1
                if event_id not in in_stream:
                    missing.append(event.position)
    unknown = sum(1 for event_id in in_stream if event_id not in known)
    ranges = position_ranges(missing)
    return StreamCheck(
        stream=stream,
        messages=messages,
        store_events=len(known),
        relayed_up_to=relayed_up_to,
        checked=checked,
        missing=len(missing),
        missing_ranges=ranges,
        unknown=unknown,
        republished=sum(n - 1 for n in in_stream.values()),
        republish=[f"memsaga relay --from-position {a} --to-position {b}" for a, b in ranges],
    )


def position_ranges(positions: list[int]) -> list[tuple[int, int]]:
    """``positions`` as sorted inclusive ranges of consecutive numbers."""
    ranges: list[tuple[int, int]] = []
    for position in sorted(positions):
        if ranges and position == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], position)
        else:
            ranges.append((position, position))
    return ranges
