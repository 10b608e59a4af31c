"""The event-store contract, run against the in-memory store and the PostgreSQL store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    Direction,
    EventIdConflict,
    EventPayload,
    InvalidEvent,
    InvalidPayload,
    InvalidQuery,
    NewEvent,
    PartialDuplicate,
    PayloadTooLarge,
    UnknownEventType,
    WrongExpectedVersion,
)
from tests.eventstore.conftest import noted, stream
from tests.eventstore.schemas import Noted, ProfileV1, ProfileV2, make_registry

MakeStore = Callable[..., Any]


async def test_append_assigns_versions_and_increasing_positions(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    first = await store.append(sid, [noted("a"), noted("b")], expected_version=NO_STREAM)
    second = await store.append(sid, [noted("c")], expected_version=2)
    assert (first.first_version, first.last_version, second.last_version) == (1, 2, 3)
    assert first.positions[0] < first.positions[1] < second.positions[0]
    events = await store.read_stream(sid)
    assert [e.payload["text"] for e in events] == ["a", "b", "c"]
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.position for e in events] == first.positions + second.positions
    assert await store.stream_version(sid) == 3


async def test_envelope_round_trips(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    when = datetime(2025, 5, 1, 12, 30, tzinfo=UTC)
    event = noted(
        "x",
        correlation_id="corr-1",
        causation_id="cause-1",
        user_id="u-1",
        occurred_at=when,
        metadata={"traceparent": "00-abc-def-01"},
    )
    await store.append(sid, [event])
    (got,) = await store.read_stream(sid)
    assert got.event_id == event.event_id
    assert (got.stream_id, got.event_type, got.event_version, got.stored_version) == (sid, "Noted", 1, 1)
    assert (got.correlation_id, got.causation_id, got.user_id) == ("corr-1", "cause-1", "u-1")
    assert got.occurred_at == when
    assert got.recorded_at.tzinfo is not None
    assert got.payload == {"text": "x", "tags": []}
    assert got.metadata == {"traceparent": "00-abc-def-01"}
    assert got.category == "note"


@pytest.mark.parametrize(
    ("expected", "prior_events", "ok"),
    [
        (NO_STREAM, 0, True),
        (NO_STREAM, 1, False),
        (0, 1, False),
        (STREAM_EXISTS, 0, False),
        (STREAM_EXISTS, 2, True),
        (ANY, 0, True),
        (ANY, 3, True),
        (2, 2, True),
        (2, 1, False),
        (2, 3, False),
    ],
)
async def test_expected_version(make_store: MakeStore, expected: Any, prior_events: int, ok: bool) -> None:
    store = make_store()
    sid = stream()
    for i in range(prior_events):
        await store.append(sid, [noted(str(i))])
    if ok:
        result = await store.append(sid, [noted("new")], expected_version=expected)
        assert result.last_version == prior_events + 1
    else:
        with pytest.raises(WrongExpectedVersion) as info:
            await store.append(sid, [noted("new")], expected_version=expected)
        assert info.value.actual == prior_events
        assert info.value.expected == expected
        assert await store.stream_version(sid) == prior_events


async def test_reappending_the_same_events_is_idempotent(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    batch = [noted("a"), noted("b")]
    original = await store.append(sid, batch, expected_version=NO_STREAM)
    await store.append(sid, [noted("c")])
    # A retried activity sends the same batch with the same (now stale) expected version.
    again = await store.append(sid, batch, expected_version=NO_STREAM)
    assert again.duplicate and not original.duplicate
    assert (again.first_version, again.last_version, again.positions) == (1, 2, original.positions)
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["a", "b", "c"]


async def test_event_id_with_a_different_body_is_refused(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    event_id = uuid.uuid4()
    await store.append(sid, [noted("a", event_id=event_id)])
    with pytest.raises(EventIdConflict) as info:
        await store.append(sid, [noted("changed", event_id=event_id)])
    assert info.value.field == "payload"
    with pytest.raises(EventIdConflict) as info:
        await store.append(stream(), [noted("a", event_id=event_id)])
    assert info.value.field == "stream_id"
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["a"]


async def test_metadata_may_differ_on_a_retry(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    event_id = uuid.uuid4()
    await store.append(sid, [noted("a", event_id=event_id, metadata={"traceparent": "first"})])
    again = await store.append(sid, [noted("a", event_id=event_id, metadata={"traceparent": "retry"})])
    assert again.duplicate
    (stored,) = await store.read_stream(sid)
    assert stored.metadata == {"traceparent": "first"}


async def test_partial_duplicate_is_refused_and_stores_nothing(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    first = noted("a")
    await store.append(sid, [first])
    with pytest.raises(PartialDuplicate):
        await store.append(sid, [first, noted("b")])
    assert await store.stream_version(sid) == 1


async def test_bad_input_is_refused_by_name_and_changes_nothing(make_store: MakeStore) -> None:
    store = make_store(max_payload_bytes=200)
    sid = stream()
    await store.append(sid, [noted("kept")])
    head = await store.head_position()
    when = datetime(2026, 1, 1, tzinfo=UTC)

    def raw(event_type: str, version: int, payload: dict[str, Any]) -> NewEvent:
        return NewEvent(
            event_type=event_type,
            event_version=version,
            payload=payload,
            correlation_id="c",
            causation_id="c",
            occurred_at=when,
        )

    with pytest.raises(UnknownEventType, match="Unheard"):
        await store.append(sid, [raw("Unheard", 1, {})])
    with pytest.raises(UnknownEventType, match=r"registered versions: \[1, 2, 3\]"):
        await store.append(sid, [raw("ProfileUpdated", 9, {})])
    with pytest.raises(InvalidPayload) as invalid:
        await store.append(sid, [noted("ok"), raw("Noted", 1, {"txt": "typo"})])
    assert "text" in invalid.value.fields and "txt" in invalid.value.fields
    assert "field 'text'" in str(invalid.value)
    with pytest.raises(InvalidPayload) as wrong_type:
        await store.append(sid, [raw("ProfileUpdated", 2, {"first_name": "A", "last_name": 3})])
    assert wrong_type.value.fields == ["last_name"]
    with pytest.raises(PayloadTooLarge, match=r"BlobStore\.put"):
        await store.append(sid, [noted("x" * 500)])
    with pytest.raises(InvalidEvent):
        await store.append(sid, [])
    with pytest.raises(InvalidEvent):
        await store.append("", [noted()])
    duplicate_in_batch = noted("twice")
    with pytest.raises(InvalidEvent):
        await store.append(sid, [duplicate_in_batch, duplicate_in_batch])
    with pytest.raises(InvalidEvent):
        await store.append(sid, [noted()], expected_version=-3)
    # Readers would get a float back: refused, with what to do instead.
    with pytest.raises(InvalidEvent, match="64 bits"):
        await store.append(sid, [noted("big", metadata={"n": 2**70})])
    with pytest.raises(InvalidEvent, match="cannot be stored as JSON"):
        await store.append(sid, [noted("odd", metadata={"n": object()})])
    with pytest.raises(InvalidEvent, match="NUL character"):  # jsonb cannot store it
        await store.append(sid, [noted("nul \x00 inside")])
    assert await store.head_position() == head
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["kept"]


class NotedLookalike(EventPayload):
    """Claims Noted v1 but is not the registered model."""

    event_type = "Noted"
    text: int


async def test_a_payload_is_validated_unless_its_registered_model_dumped_it(make_store: MakeStore) -> None:
    """``NewEvent.of`` of the registered model is valid as it is; anything else is checked."""
    store, sid = make_store(), stream()
    event = noted("as dumped")
    assert make_registry().validate(event) is event.payload  # not validated a second time
    with pytest.raises(InvalidPayload):
        await store.append(sid, [event.model_copy(update={"payload": {"txt": "typo"}})])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    lookalike = NewEvent.of(NotedLookalike(text=3), correlation_id="c", causation_id="c", occurred_at=when)
    with pytest.raises(InvalidPayload):
        await store.append(sid, [lookalike])
    copied = event.model_copy(update={"causation_id": "other"})  # a copy is validated again
    assert copied.dumped_from() is None and event.dumped_from() is Noted
    await store.append(sid, [copied])
    assert event == NewEvent(**event.model_dump())  # the mark is not part of the event
    assert [e.payload for e in await store.read_stream(sid)] == [event.payload]


def test_envelope_refuses_naive_time_and_empty_ids() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        noted(occurred_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="correlation_id"):
        noted(correlation_id="")


async def test_read_stream_backward_from_version_with_limit(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    await store.append(sid, [noted(str(i)) for i in range(1, 6)])
    assert [e.version for e in await store.read_stream(sid, from_version=3)] == [3, 4, 5]
    assert [e.version for e in await store.read_stream(sid, from_version=2, limit=2)] == [2, 3]
    backward = await store.read_stream(sid, direction=Direction.BACKWARD)
    assert [e.version for e in backward] == [5, 4, 3, 2, 1]
    window = await store.read_stream(sid, direction=Direction.BACKWARD, from_version=4, limit=2)
    assert [e.version for e in window] == [4, 3]
    assert await store.read_stream(stream()) == []


async def test_read_all_in_batches_in_position_order(make_store: MakeStore) -> None:
    store = make_store()
    start = await store.head_position()
    sids = [stream() for _ in range(3)]
    for i in range(7):
        await store.append(sids[i % 3], [noted(str(i))])
    seen = []
    async for batch in store.read_all(after_position=start, batch_size=3):
        assert len(batch) <= 3
        seen.extend(batch)
    assert [e.payload["text"] for e in seen] == [str(i) for i in range(7)]
    positions = [e.position for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == 7


async def test_json_extremes_replay_exactly(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    extremes = {
        "not a nul": "a backslash, then u0000: \\u0000",
        "max": 2**64 - 1,
        "min": -(2**63),
        "float": 0.1,
        "text": 'naïve ✓ "q" \\',
        "nested": [{}],
    }
    await store.append(sid, [noted("edge", metadata={"extremes": extremes})])
    (event,) = await store.read_stream(sid)
    assert event.metadata["extremes"] == extremes
    assert type(event.metadata["extremes"]["max"]) is int


async def test_read_all_can_stop_early_and_start_again(make_store: MakeStore) -> None:
    store = make_store()
    start = await store.head_position()
    sid = stream()
    await store.append(sid, [noted(str(i)) for i in range(10)])
    for _ in range(30):  # leaving early must not hold on to connections or tasks
        async for batch in store.read_all(after_position=start, batch_size=2):
            assert [e.payload["text"] for e in batch] == ["0", "1"]
            break
    texts = [e.payload["text"] async for batch in store.read_all(after_position=start) for e in batch]
    assert texts == [str(i) for i in range(10)]


async def test_read_correlation_and_causation(make_store: MakeStore) -> None:
    store = make_store()
    corr = f"corr-{uuid.uuid4().hex}"
    root = noted("root", correlation_id=corr, causation_id="request-1")
    child = noted("child", correlation_id=corr, causation_id=str(root.event_id))
    grandchild = noted("grandchild", correlation_id=corr, causation_id=str(child.event_id))
    sibling = noted("sibling", correlation_id=corr, causation_id="request-1")
    await store.append(stream(), [root, sibling])
    await store.append(stream(), [child])
    await store.append(stream(), [grandchild])
    await store.append(stream(), [noted("other correlation")])
    by_corr = await store.read_correlation(corr)
    assert [e.payload["text"] for e in by_corr] == ["root", "sibling", "child", "grandchild"]
    tree = await store.read_causation(root.event_id)
    assert [e.payload["text"] for e in tree] == ["root", "child", "grandchild"]
    assert [e.payload["text"] for e in await store.read_causation(grandchild.event_id)] == ["grandchild"]
    assert await store.read_causation(uuid.uuid4()) == []


async def test_upcasters_chain_across_three_versions_on_read(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for payload in (ProfileV1(name="Ana Silva"), ProfileV2(first_name="Rui", last_name="Costa")):
        await store.append(
            sid, [NewEvent.of(payload, correlation_id="c", causation_id="c", occurred_at=when)]
        )
    v1, v2 = await store.read_stream(sid)
    assert (v1.event_version, v1.stored_version) == (3, 1)
    assert v1.payload == {"first_name": "Ana", "last_name": "Silva", "locale": "en"}
    assert (v2.event_version, v2.stored_version) == (3, 2)
    assert v2.payload == {"first_name": "Rui", "last_name": "Costa", "locale": "en"}
    decoded = store.registry.decode(v1)
    assert decoded is not None and decoded.locale == "en"


async def test_unknown_types_are_read_raw(make_store: MakeStore) -> None:
    from eventstore import SchemaRegistry

    store = make_store()
    sid = stream()
    await store.append(sid, [noted("from newer code")])
    # A reader whose code predates the type still reads the event, untouched.
    store.registry = SchemaRegistry()
    (event,) = await store.read_stream(sid)
    assert event.event_type == "Noted" and event.payload == {"text": "from newer code", "tags": []}
    assert store.registry.decode(event) is None


async def test_fifty_appenders_racing_on_one_stream(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    await store.append(sid, [noted("seed")], expected_version=NO_STREAM)
    rounds = 3
    for _ in range(rounds):
        current = await store.stream_version(sid)

        async def attempt(i: int, version: int = current) -> bool:
            try:
                await store.append(sid, [noted(f"w{i}")], expected_version=version)
            except WrongExpectedVersion as exc:
                assert exc.actual == version + 1
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(50)))
        assert results.count(True) == 1
    events = await store.read_stream(sid)
    assert [e.version for e in events] == list(range(1, rounds + 2))


async def test_concurrent_any_appends_all_land_without_holes(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    await asyncio.gather(*(store.append(sid, [noted(str(i)), noted(f"{i}b")]) for i in range(25)))
    events = await store.read_stream(sid)
    assert [e.version for e in events] == list(range(1, 51))
    texts = [e.payload["text"] for e in events]
    for i in range(25):  # each batch landed contiguously
        assert texts.index(f"{i}b") == texts.index(str(i)) + 1


async def test_concurrent_retries_of_one_append_store_it_once(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    batch = [noted("once"), noted("twice?")]
    results = await asyncio.gather(*(store.append(sid, batch, expected_version=NO_STREAM) for _ in range(10)))
    assert sum(not r.duplicate for r in results) == 1
    assert {tuple(r.positions) for r in results} == {tuple(results[0].positions)}
    assert len(await store.read_stream(sid)) == 2


async def test_occurred_at_is_the_producers_time(make_store: MakeStore) -> None:
    store = make_store()
    sid = stream()
    long_ago = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)
    await store.append(sid, [noted(occurred_at=long_ago)])
    (event,) = await store.read_stream(sid)
    assert event.occurred_at == long_ago
    assert event.recorded_at - long_ago > timedelta(days=365)


async def test_backlog_counts_the_events_after_a_position(make_store: MakeStore) -> None:
    store = make_store()
    start = await store.head_position()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    profile = NewEvent.of(ProfileV1(name="Ana Silva"), correlation_id="c", causation_id="c", occurred_at=when)
    await store.append(stream(), [noted("a"), noted("b")])
    await store.append(stream(), [profile])
    everything = await store.backlog(after_position=start)
    assert everything.events == 3 and 0 <= everything.seconds < 60
    assert (await store.backlog(after_position=start, event_types=["ProfileUpdated"])).events == 1
    assert (await store.backlog(after_position=start + 1, event_types=["Noted"])).events == 1
    assert (await store.backlog(after_position=start, event_types=[])).events == 0
    assert (await store.backlog(after_position=start, until_position=start + 2)).events == 2
    up_to_the_noted = await store.backlog(
        after_position=start, until_position=start + 2, event_types=["ProfileUpdated"]
    )
    assert up_to_the_noted.events == 0
    caught_up = await store.backlog(after_position=await store.head_position())
    assert (caught_up.events, caught_up.seconds) == (0, 0.0)


async def test_find_events_by_a_payload_field(make_store: MakeStore) -> None:
    store = make_store()
    x, y = f"x-{uuid.uuid4().hex}", f"y-{uuid.uuid4().hex}"
    when = datetime(2026, 1, 1, tzinfo=UTC)
    profile = NewEvent.of(ProfileV1(name="Ana Silva"), correlation_id="c", causation_id="c", occurred_at=when)
    mine, other_text, others, closed = stream(), stream(), stream(), stream()
    await store.append(mine, [noted(x, user_id="u-1"), noted(y, user_id="u-1")])
    await store.append(other_text, [noted("z", user_id="u-1")])
    await store.append(others, [noted(x, user_id="u-2")])
    await store.append(closed, [noted(y, user_id="u-1"), profile])

    def found(events: list[Any]) -> list[tuple[str, str]]:
        return [(e.stream_id, e.payload["text"]) for e in events]

    everyone = await store.find_events("Noted", payload_field="text", values=[x, y])
    assert found(everyone) == [(mine, x), (mine, y), (others, x), (closed, y)]
    assert [e.position for e in everyone] == sorted(e.position for e in everyone)
    by_user = await store.find_events("Noted", payload_field="text", values=[x, y], user_id="u-1")
    assert found(by_user) == [(mine, x), (mine, y), (closed, y)]
    open_only = await store.find_events(
        "Noted", payload_field="text", values=[x, y], user_id="u-1", unless_stream_has="ProfileUpdated"
    )
    assert found(open_only) == [(mine, x), (mine, y)]
    unless = await store.find_events(
        "Noted", payload_field="text", values=[y], unless_stream_has="ProfileUpdated"
    )
    assert found(unless) == [(mine, y)]
    assert await store.find_events("ProfileUpdated", payload_field="text", values=[x]) == []
    assert await store.find_events("Noted", payload_field="text", values=[]) == []
    with pytest.raises(InvalidQuery):
        await store.find_events("Noted", payload_field="text' OR true --", values=[x])


async def test_read_type_reads_one_event_type_after_a_position(make_store: MakeStore) -> None:
    store = make_store()
    user, other = f"u-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"
    when = datetime(2026, 1, 1, tzinfo=UTC)
    profile = NewEvent.of(
        ProfileV1(name="Ana Silva"), correlation_id="c", causation_id="c", occurred_at=when, user_id=user
    )
    start = await store.head_position()
    await store.append(stream(), [noted("a", user_id=user), profile, noted("b", user_id=other)])
    await store.append(stream(), [noted("c", user_id=user)])

    def texts(events: list[Any]) -> list[str]:
        return [e.payload["text"] for e in events]

    mine = await store.read_type("Noted", user_id=user, after_position=start)
    assert texts(mine) == ["a", "c"]
    assert texts(await store.read_type("Noted", after_position=start)) == ["a", "b", "c"]
    assert texts(await store.read_type("Noted", after_position=start, limit=2)) == ["a", "b"]
    assert texts(await store.read_type("Noted", user_id=user, after_position=mine[0].position)) == ["c"]
