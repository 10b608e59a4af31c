"""The pure re-extraction decision: what new candidates do to the memories an episode gave."""

from __future__ import annotations

from sagas.memory_extraction.events import Candidate, SlotMemory
from sagas.memory_extraction.extractors import make_candidate
from sagas.memory_extraction.reconcile import reconcile
from sagas.reextraction import (
    RETRACTED_BY,
    EpisodeMemory,
    EpisodeReextracted,
    Known,
    ReextractedMemory,
    decide,
    unmatched,
)

LISBON = make_candidate("User lives in Lisbon", "identity", slot="residence", value="Lisbon")


def memory(
    candidate: Candidate, memory_id: str, status: str = "current", by: str | None = None
) -> EpisodeMemory:
    return EpisodeMemory(
        memory_id=memory_id,
        created_event_id=f"created-{memory_id}",
        content_hash=candidate.content_hash,
        slot=candidate.slot,
        value=candidate.value,
        polarity=candidate.polarity,
        status=status,
        retracted_by=by,
    )


def run(
    candidates: list[Candidate],
    mine: list[EpisodeMemory],
    known: Known | None = None,
    current: list[SlotMemory] | None = None,
) -> EpisodeReextracted:
    planned = {
        c.candidate_id: ReextractedMemory(
            candidate_id=c.candidate_id, memory_id=f"new-{c.candidate_id}", created_event_id="e"
        )
        for c in candidates
    }
    reconciled = reconcile(
        unmatched(candidates, mine), current or [], {k: v.memory_id for k, v in planned.items()}
    )
    return decide(
        request_id="r", episode_id="ep", extractor="x", embedder="y", candidates=candidates, embeddings=[],
        episode_memories=mine, known=known or Known(), reconciled=reconciled, planned=planned,
    )  # fmt: skip


def test_the_same_fact_in_other_words_stays_untouched() -> None:
    reworded = make_candidate("User is based in Lisbon", "identity", slot="residence", value="lisbon")

    decided = run([reworded], [memory(LISBON, "m-lisbon")])

    assert (decided.unchanged, decided.retired, decided.created) == (["m-lisbon"], [], [])


def test_a_memory_no_longer_found_is_retired_even_when_superseded_since() -> None:
    decided = run([], [memory(LISBON, "m-lisbon", status="superseded")])

    assert [r.memory_id for r in decided.retired] == ["m-lisbon"]


def test_a_retraction_by_someone_is_for_good_one_by_a_reextraction_is_not() -> None:
    by_user = run([LISBON], [memory(LISBON, "m-1", status="retracted", by="ana")])
    by_reextraction = run([LISBON], [memory(LISBON, "m-1", status="retracted", by=RETRACTED_BY + "r0")])
    elsewhere = run([LISBON], [], Known(retracted_hashes=[LISBON.content_hash]))

    assert (by_user.kept_retracted, by_user.created, by_user.retired) == ([LISBON.candidate_id], [], [])
    assert [m.candidate_id for m in by_reextraction.created] == [LISBON.candidate_id]
    assert elsewhere.kept_retracted == [LISBON.candidate_id]


def test_an_old_episode_does_not_overrule_a_current_memory_and_sensitive_ones_wait() -> None:
    berlin = SlotMemory(
        memory_id="m-berlin", slot="residence", value="Berlin", polarity="holds", text="User lives in Berlin"
    )
    peanuts = make_candidate("User is allergic to peanuts", "health")

    decided = run([LISBON, peanuts], [], current=[berlin])

    assert decided.conflicts == [LISBON.candidate_id]
    assert decided.held_sensitive == [peanuts.candidate_id]
    assert decided.created == []


def test_a_fact_the_user_has_from_another_episode_is_a_duplicate() -> None:
    decided = run([LISBON], [], Known(live_elsewhere={LISBON.content_hash: "m-other"}))

    assert [(d.candidate_id, d.existing_memory_id) for d in decided.duplicates] == [
        (LISBON.candidate_id, "m-other")
    ]
