"""Memories that change, through the saga's activities over one in-memory store: several
sagas of one user in turn, with an extractor that gives each sentence a fixed slot.

These pin reconciliation end to end on the write side: a new value supersedes, a negation
invalidates, a restatement is a duplicate, and compensating a saga that ended memories
reinstates them, so a failed saga leaves the user's memories exactly as before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.memory_extraction import MemoryExtractionActivities
from activities.memory_extraction_io import (
    DeduplicateInput,
    EmbedInput,
    ExtractInput,
    ReconcileInput,
    ReconcileResult,
    RecordEpisodeInput,
    RetractMemoriesInput,
    StoreMemoriesInput,
    StoreResult,
)
from activities.memory_index import StoreMemoryIndex
from eventstore import InMemoryBlobStore, InMemoryEventStore, NewEvent
from memsaga.bootstrap import build_registry
from sagas.memory_extraction.domain import Envelope, ExtractionOptions, episode_id_for, plan_memories
from sagas.memory_extraction.embedders import HashingEmbedder
from sagas.memory_extraction.events import Candidate, MemoryRetracted, Polarity, memory_stream
from sagas.memory_extraction.extractors import make_candidate
from sagas.memory_extraction.lifecycle import MemoryState, memory_state
from sagas.memory_extraction.ports import Heartbeat

# sentence -> (memory text, slot, value, polarity, stated date)
TABLE: dict[str, tuple[str, str | None, str | None, Polarity, str | None]] = {
    "I moved to Lisbon in May 2024.": (
        "User moved to Lisbon in May 2024",
        "residence",
        "Lisbon",
        "holds",
        "2024-05",
    ),
    "I moved to Berlin.": ("User moved to Berlin", "residence", "Berlin", "holds", None),
    "I don't live in Lisbon anymore.": (
        "User no longer lives in Lisbon",
        "residence",
        "Lisbon",
        "ended",
        None,
    ),
    "I love hiking.": ("User loves hiking", "preference:hiking", "positive", "holds", None),
    "I enjoy hiking.": ("User enjoys hiking", "preference:hiking", "positive", "holds", None),
    "I love coffee.": ("User loves coffee", "preference:coffee", "positive", "holds", None),
    "I no longer drink coffee.": ("User no longer drinks coffee", "preference:coffee", None, "ended", None),
    "I have a red bike.": ("User has a red bike", None, None, "holds", None),
}


class TableExtractor:
    """One candidate per known sentence of the text, with the slot :data:`TABLE` gives it."""

    name = "table"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        said = sorted((text.index(sentence), sentence) for sentence in TABLE if sentence in text)
        found = []
        for _, sentence in said:
            memory, slot, value, polarity, stated = TABLE[sentence]
            update = {"slot": slot, "value": value, "polarity": polarity, "valid_from": stated}
            found.append(make_candidate(memory, "fact").model_copy(update=update))
        return found


class User:
    """One user's sagas over a shared store, run step by step through the activities."""

    def __init__(self) -> None:
        self.store = InMemoryEventStore(build_registry())
        self.acts = MemoryExtractionActivities(
            self.store,
            InMemoryBlobStore(),
            StoreMemoryIndex(self.store),
            lambda options: TableExtractor(),
            lambda options: HashingEmbedder(8),
        )
        self.user_id = f"u-{uuid.uuid4().hex[:6]}"
        self.day = 0

    async def saga(
        self,
        text: str,
        *,
        compensate: bool = False,
        before_store: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[ReconcileResult, StoreResult]:
        """Every step of one saga up to the store; then its compensation when ``compensate``."""
        self.day += 1
        workflow_id = f"extract-{uuid.uuid4().hex[:8]}"
        episode_id = episode_id_for(workflow_id)
        envelope = Envelope(
            workflow_id=workflow_id,
            correlation_id=workflow_id,
            user_id=self.user_id,
            occurred_at=datetime(2026, 1, self.day, 12, tzinfo=UTC),
        )
        run = ActivityEnvironment().run
        options = ExtractionOptions(extractor="table")
        recorded = await run(
            self.acts.record_episode,
            RecordEpisodeInput(
                envelope=envelope,
                episode_id=episode_id,
                text=text,
                text_sha256=None,
                source="chat",
                options=options,
            ),
        )
        step: dict[str, Any] = {
            "envelope": envelope,
            "episode_id": episode_id,
            "causation_id": recorded.event_id,
        }
        extracted = await run(
            self.acts.extract_candidates, ExtractInput(**step, expected_version=2, options=options)
        )
        embedded = await run(
            self.acts.embed_candidates,
            EmbedInput(**step, expected_version=extracted.version, options=options),
        )
        deduped = await run(
            self.acts.deduplicate_candidates, DeduplicateInput(**step, expected_version=embedded.version)
        )
        reconciled = await run(
            self.acts.reconcile_candidates, ReconcileInput(**step, expected_version=deduped.version)
        )
        planned = plan_memories(workflow_id, reconciled.kept)
        if before_store is not None:
            await before_store()
        store_input = StoreMemoriesInput(**step, expected_version=reconciled.version, memories=planned)
        stored = await run(self.acts.store_memories, store_input)
        assert await run(self.acts.store_memories, store_input) == stored  # a retry changes nothing
        if compensate:
            retract = RetractMemoriesInput(
                envelope=envelope, episode_id=episode_id, memories=planned, reason="failed", causation_id="c"
            )
            first = await run(self.acts.retract_memories, retract)
            assert await run(self.acts.retract_memories, retract) == first  # idempotent
        return reconciled, stored

    async def memory(self, memory_id: str) -> MemoryState:
        state = memory_state(await self.store.read_stream(memory_stream(memory_id)))
        assert state is not None
        return state

    async def current(self) -> dict[str, str]:
        """``{text: memory id}`` of the user's current memories."""
        streams = {
            e.stream_id
            async for batch in self.store.read_all()
            for e in batch
            if e.stream_id.startswith("memory-")
        }
        found: dict[str, str] = {}
        for stream in streams:
            state = memory_state(await self.store.read_stream(stream))
            if state is not None and state.is_current:
                found[state.text or ""] = state.memory_id
        return found


async def test_a_new_value_of_a_slot_supersedes_the_old_memory_from_the_new_one_s_world_time() -> None:
    user = User()
    _, first = await user.saga("I moved to Lisbon in May 2024.")
    [lisbon] = first.memory_ids
    assert (await user.memory(lisbon)).valid_from == datetime(2024, 5, 1, tzinfo=UTC)

    reconciled, second = await user.saga("I moved to Berlin. I don't live in Lisbon anymore.")

    [berlin] = second.memory_ids
    assert second.superseded == [lisbon] and second.invalidated == []
    assert (reconciled.superseded, reconciled.invalidated, reconciled.duplicates) == (1, 0, 1)
    old = await user.memory(lisbon)
    assert (old.status, old.superseded_by) == ("superseded", berlin)
    assert old.valid_to == (await user.memory(berlin)).valid_from == datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert await user.current() == {"User moved to Berlin": berlin}
    assert old.valid_at(datetime(2024, 6, 1, tzinfo=UTC)) and not old.valid_at(
        datetime(2026, 2, 1, tzinfo=UTC)
    )


async def test_the_same_fact_in_other_words_is_a_duplicate_of_the_current_memory() -> None:
    user = User()
    await user.saga("I love hiking.")

    reconciled, second = await user.saga("I enjoy hiking. I have a red bike.")

    assert reconciled.duplicates == 1 and len(second.memory_ids) == 1
    assert set(await user.current()) == {"User loves hiking", "User has a red bike"}


async def test_a_negation_invalidates_and_is_not_stored_itself() -> None:
    user = User()
    _, first = await user.saga("I love coffee.")

    reconciled, second = await user.saga("I no longer drink coffee.")

    assert second.memory_ids == [] and second.invalidated == first.memory_ids
    assert reconciled.kept == [] and len(reconciled.ending) == 1  # reviewed like a kept one
    coffee = await user.memory(first.memory_ids[0])
    assert coffee.status == "invalidated" and coffee.valid_to == datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert await user.current() == {}


async def test_a_negation_that_ends_nothing_is_remembered_as_it_is() -> None:
    user = User()

    _, stored = await user.saga("I no longer drink coffee.")

    assert len(stored.memory_ids) == 1
    assert (await user.memory(stored.memory_ids[0])).polarity == "ended"


async def test_compensating_a_saga_that_superseded_leaves_the_memories_as_before_it() -> None:
    user = User()
    await user.saga("I moved to Lisbon in May 2024. I love coffee.")
    before = await user.current()

    _, stored = await user.saga("I moved to Berlin. I no longer drink coffee.", compensate=True)

    assert stored.superseded and stored.invalidated  # it did end both, then was undone
    assert await user.current() == before
    for memory_id in before.values():
        state = await user.memory(memory_id)
        assert (state.status, state.valid_to, state.superseded_by) == ("current", None, None)
    berlin = await user.memory(stored.memory_ids[0])
    assert berlin.status == "retracted"


async def test_a_memory_changed_between_reconciliation_and_store_is_left_as_it_is() -> None:
    user = User()
    _, first = await user.saga("I love coffee.")
    [coffee] = first.memory_ids

    async def user_retracts_coffee() -> None:
        created = (await user.store.read_stream(memory_stream(coffee)))[0]
        retraction = MemoryRetracted(
            memory_id=coffee, user_id=user.user_id, compensates_event_id=str(created.event_id), reason="wrong"
        )
        await user.store.append(
            memory_stream(coffee),
            [NewEvent.of(retraction, correlation_id="r", causation_id="r", occurred_at=datetime.now(UTC))],
        )

    reconciled, second = await user.saga("I no longer drink coffee.", before_store=user_retracts_coffee)

    assert reconciled.invalidated == 1  # decided while coffee was current
    assert second.invalidated == []  # but by then it was retracted: nothing to end
    assert (await user.memory(coffee)).status == "retracted"
