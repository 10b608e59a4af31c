"""Reconciliation, world time and the lifecycle fold: pure functions, no stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from eventstore import EventPayload, RecordedEvent
from sagas.memory_extraction.events import (
    Candidate,
    MemoryCreated,
    MemoryReinstated,
    MemoryRetracted,
    MemorySuperseded,
    Polarity,
    SlotMemory,
)
from sagas.memory_extraction.extractors import make_candidate
from sagas.memory_extraction.lifecycle import memory_as_of, memory_state
from sagas.memory_extraction.reconcile import reconcile, same_value
from sagas.memory_extraction.world_time import is_stated_date, resolve_valid_from

EPISODE = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


def candidate(text: str, slot: str | None, value: str | None, polarity: Polarity = "holds") -> Candidate:
    return make_candidate(text, "fact").model_copy(
        update={"slot": slot, "value": value, "polarity": polarity}
    )


def held(memory_id: str, slot: str, value: str | None, polarity: Polarity = "holds") -> SlotMemory:
    return SlotMemory(memory_id=memory_id, slot=slot, value=value, polarity=polarity, text=memory_id)


def plan(*candidates: Candidate) -> dict[str, str]:
    return {c.candidate_id: f"new-{c.text}" for c in candidates}


def test_a_different_value_supersedes_and_an_equal_one_is_a_duplicate() -> None:
    berlin = candidate("User lives in Berlin", "residence", "Berlin")
    hiking = candidate("User enjoys hiking", "preference:hiking", "Positive")
    current = [held("lisbon", "residence", "Lisbon"), held("hikes", "preference:hiking", "positive")]

    decided = reconcile([berlin, hiking], current, plan(berlin, hiking))

    assert decided.kept == [berlin.candidate_id]
    assert [(s.memory_id, s.successor_id) for s in decided.supersessions] == [
        ("lisbon", "new-User lives in Berlin")
    ]
    assert [(d.candidate_id, d.existing_memory_id) for d in decided.duplicates] == [
        (hiking.candidate_id, "hikes")
    ]
    assert decided.considered == current  # the inputs travel with the decision


def test_an_ending_invalidates_what_it_names_and_nothing_else() -> None:
    ended = candidate("User no longer lives in Lisbon", "residence", "lisbon", "ended")

    decided = reconcile(
        [ended], [held("berlin", "residence", "Berlin"), held("lisbon", "residence", "Lisbon")], plan(ended)
    )

    assert [(i.memory_id, i.candidate_id) for i in decided.invalidations] == [("lisbon", ended.candidate_id)]
    assert decided.kept == [] and decided.supersessions == []


def test_an_ending_without_a_value_ends_the_whole_slot() -> None:
    ended = candidate("User no longer drinks coffee", "preference:coffee", None, "ended")

    decided = reconcile([ended], [held("likes", "preference:coffee", "positive")], plan(ended))

    assert [i.memory_id for i in decided.invalidations] == ["likes"]


def test_an_ending_of_what_the_same_episode_superseded_is_a_duplicate_whatever_the_order() -> None:
    ended = candidate("User no longer lives in Lisbon", "residence", "Lisbon", "ended")
    berlin = candidate("User moved to Berlin", "residence", "Berlin")
    current = [held("lisbon", "residence", "Lisbon")]

    for order in ([ended, berlin], [berlin, ended]):
        decided = reconcile(order, current, plan(ended, berlin))
        assert decided.kept == [berlin.candidate_id]
        assert [s.memory_id for s in decided.supersessions] == ["lisbon"] and decided.invalidations == []
        assert [(d.candidate_id, d.existing_memory_id) for d in decided.duplicates] == [
            (ended.candidate_id, "lisbon")
        ]


def test_an_ending_that_ends_nothing_is_kept_and_a_later_value_supersedes_it() -> None:
    ended = candidate("User no longer drinks coffee", "preference:coffee", None, "ended")
    assert reconcile([ended], [], plan(ended)).kept == [ended.candidate_id]

    loves = candidate("User loves coffee", "preference:coffee", "positive")
    decided = reconcile([loves], [held("stopped", "preference:coffee", None, "ended")], plan(loves))
    assert [s.memory_id for s in decided.supersessions] == ["stopped"]


def test_within_one_episode_a_later_value_supersedes_an_earlier_one() -> None:
    lisbon = candidate("User moved to Lisbon", "residence", "Lisbon")
    berlin = candidate("User moved to Berlin", "residence", "Berlin")

    decided = reconcile([lisbon, berlin], [], plan(lisbon, berlin))

    assert decided.kept == [lisbon.candidate_id, berlin.candidate_id]
    assert [(s.memory_id, s.candidate_id) for s in decided.supersessions] == [
        ("new-User moved to Lisbon", berlin.candidate_id)
    ]


def test_candidates_without_a_slot_or_a_value_conflict_with_nothing() -> None:
    bike = candidate("User has a red bike", None, None)
    vague = candidate("User lives somewhere nice", "residence", None)

    decided = reconcile([bike, vague], [held("lisbon", "residence", "Lisbon")], plan(bike, vague))

    assert decided.kept == [bike.candidate_id, vague.candidate_id]
    assert decided.supersessions == [] and decided.invalidations == [] and decided.duplicates == []


def test_values_compare_casefolded_with_spaces_collapsed_and_none_equals_nothing() -> None:
    assert same_value("New  York", "new york") and not same_value(None, None) and not same_value("a", None)


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        (None, EPISODE),
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-03-03", datetime(2024, 3, 3, tzinfo=UTC)),
        ("--02", datetime(2026, 2, 1, tzinfo=UTC)),  # the latest February not after the episode
        ("--05", datetime(2025, 5, 1, tzinfo=UTC)),  # May 2026 is after it: last year's
        ("--03-10", datetime(2026, 3, 10, tzinfo=UTC)),
        ("2024-02-30", EPISODE),  # not a date: the episode's time, never an error
        ("May", EPISODE),
    ],
)
def test_a_stated_date_resolves_against_the_episode(stated: str | None, expected: datetime) -> None:
    assert resolve_valid_from(stated, EPISODE) == expected


def test_only_real_dates_in_the_documented_forms_are_stated_dates() -> None:
    assert all(is_stated_date(s) for s in ("1990", "1990-03", "1990-03-14", "--03", "--03-14"))
    assert not any(is_stated_date(s) for s in ("1990-13", "--02-30", "3/14/1990", "", "2024-5"))


def recorded(payload: EventPayload, version: int, at: datetime) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{version}"),
        stream_id="memory-m",
        version=version,
        position=version,
        event_type=payload.event_type,
        event_version=payload.event_version,
        stored_version=payload.event_version,
        payload=payload.model_dump(mode="json"),
        correlation_id="c",
        causation_id="c",
        user_id="u",
        occurred_at=at,
        recorded_at=at,
        metadata={},
    )


def test_the_fold_reinstates_only_the_ending_it_names_and_a_retraction_is_final() -> None:
    day = [datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 6)]
    created = MemoryCreated(
        memory_id="m", user_id="u", episode_id="e", text="User lives in Lisbon", kind="fact",
        content_hash="h", vector_sha256=None, dimension=None, embedder=None, source="chat",
        slot="residence", value="Lisbon",
    )  # fmt: skip
    superseded = MemorySuperseded(
        memory_id="m", user_id="u", successor_id="n", valid_to=day[1], episode_id="e2"
    )
    events = [recorded(created, 1, day[0]), recorded(superseded, 2, day[1])]
    ending_id = str(events[1].event_id)

    wrong = recorded(
        MemoryReinstated(memory_id="m", user_id="u", compensates_event_id="other", reason="x"), 3, day[2]
    )
    unchanged = memory_state([*events, wrong])
    assert unchanged is not None and unchanged.status == "superseded"

    right = recorded(
        MemoryReinstated(memory_id="m", user_id="u", compensates_event_id=ending_id, reason="x"), 3, day[2]
    )
    state = memory_state([*events, right])
    assert state is not None and (state.status, state.valid_to, state.superseded_by) == (
        "current",
        None,
        None,
    )
    assert state.valid_from == day[0]  # a memory of version < 3 is valid from its event's time

    retracted = MemoryRetracted(memory_id="m", user_id="u", compensates_event_id="c", reason="wrong")
    late = MemoryReinstated(memory_id="m", user_id="u", compensates_event_id=ending_id, reason="x")
    final = memory_state([*events, recorded(retracted, 3, day[2]), recorded(late, 4, day[3])])
    assert final is not None and final.status == "retracted" and not final.valid_at(day[0])

    believed = memory_as_of([*events, right], day[1])
    assert believed is not None and believed.status == "superseded" and believed.valid_at(day[0])
