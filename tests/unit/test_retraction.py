"""``retract_memory``: one memory withdrawn by hand, once, with a reason and who asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventstore import InMemoryEventStore, NewEvent
from memsaga.bootstrap import build_registry
from memsaga.retraction import InvalidRetraction, MemoryNotFound, retract_memory
from sagas.memory_extraction.events import MemoryCreated, memory_stream
from sagas.memory_extraction.lifecycle import memory_state


async def store_with_memory() -> tuple[InMemoryEventStore, str]:
    store = InMemoryEventStore(build_registry())
    created = MemoryCreated(
        memory_id="m-1", user_id="u-1", episode_id="e", text="User lives in Lisbon", kind="fact",
        content_hash="h", vector_sha256=None, dimension=None, embedder=None, source="chat",
    )  # fmt: skip
    event = NewEvent.of(created, correlation_id="c", causation_id="c", occurred_at=datetime.now(UTC))
    await store.append(memory_stream("m-1"), [event])
    return store, str(event.event_id)


async def test_a_retraction_names_the_creation_it_undoes_and_who_asked() -> None:
    store, created_id = await store_with_memory()

    done = await retract_memory(store, "m-1", reason="  the user asked  ", retracted_by="ana")

    assert (done.outcome, done.user_id, done.reason) == ("retracted", "u-1", "the user asked")
    events = await store.read_stream(memory_stream("m-1"))
    assert [e.event_type for e in events] == ["MemoryCreated", "MemoryRetracted"]
    assert events[1].payload["compensates_event_id"] == created_id
    assert events[1].payload["retracted_by"] == "ana" and events[1].causation_id == created_id
    state = memory_state(events)
    assert state is not None and state.status == "retracted"


async def test_retracting_twice_appends_once_and_says_so() -> None:
    store, _ = await store_with_memory()
    first = await retract_memory(store, "m-1", reason="wrong")

    again = await retract_memory(store, "m-1", reason="still wrong")

    assert (again.outcome, again.event_id, again.reason) == ("already_retracted", first.event_id, "wrong")
    assert len(await store.read_stream(memory_stream("m-1"))) == 2


async def test_an_unknown_memory_or_an_empty_reason_is_a_named_error_and_appends_nothing() -> None:
    store, _ = await store_with_memory()

    with pytest.raises(MemoryNotFound, match="memsaga memories --user"):
        await retract_memory(store, "nope", reason="x")
    with pytest.raises(InvalidRetraction, match="--reason"):
        await retract_memory(store, "m-1", reason="   ")
    assert len(await store.read_stream(memory_stream("m-1"))) == 1
