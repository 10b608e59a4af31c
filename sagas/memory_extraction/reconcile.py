"""Reconciliation: how an episode's new candidates meet the user's current memories of the same slot.

A pure decision over recorded inputs (the candidates of the episode stream and the current
memories the activity read, which the decision event records), so a replay decides the same.

For each slot (``residence``, ``preference:coffee``...), candidates that say it **holds** come
first, in text order, then those that say it **ended**:

- the same fact (same polarity, equal value, casefolded) as a current memory, or as an
  earlier candidate of this episode: a duplicate;
- a different value: the candidate becomes a memory and **supersedes** every memory holding
  the slot (a later candidate of the same episode supersedes an earlier one);
- **ended** with a value (or without one: the whole slot): every holding memory of that
  value is **invalidated**, and the candidate is not stored; a statement that ends what this
  episode already superseded is a duplicate; one that ends nothing is remembered as it is
  ("User no longer drinks coffee") so that it is not lost.

Candidates without a slot, and candidates that hold a slot without a value, conflict with
nothing: they are kept (exact repeats were already dropped by deduplication).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sagas.memory_extraction.events import (
    Candidate,
    CandidatesReconciled,
    DuplicateSkipped,
    Invalidation,
    Polarity,
    SlotMemory,
    Supersession,
)


def same_value(a: str | None, b: str | None) -> bool:
    """Whether two slot values are equal: casefolded, spaces collapsed; ``None`` equals nothing."""
    if a is None or b is None:
        return False
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


@dataclass(frozen=True)
class _Holder:
    """A memory that holds a slot during the decision: current already, or planned by this episode."""

    memory_id: str
    value: str | None
    polarity: Polarity


def reconcile(
    candidates: Sequence[Candidate],
    current: Sequence[SlotMemory],
    planned: Mapping[str, str],
) -> CandidatesReconciled:
    """Decide what each candidate does to the user's memories (see the module docstring).

    ``candidates`` are the deduplicated ones in text order; ``current`` the user's current
    memories of their slots; ``planned`` maps each candidate id to the memory id it would get.
    """
    holders: dict[str, list[_Holder]] = {}
    for memory in current:
        holders.setdefault(memory.slot, []).append(_Holder(memory.memory_id, memory.value, memory.polarity))
    ended_here: dict[tuple[str, str], str] = {}  # (slot, casefolded value) -> memory this episode ended
    kept: set[str] = set()
    duplicates: list[DuplicateSkipped] = []
    supersessions: list[Supersession] = []
    invalidations: list[Invalidation] = []

    def end(slot: str, holder: _Holder) -> None:
        if holder.value is not None:
            ended_here[(slot, holder.value.casefold())] = holder.memory_id

    ordered = [c for c in candidates if c.polarity == "holds"] + [
        c for c in candidates if c.polarity == "ended"
    ]
    for candidate in ordered:
        slot, cid = candidate.slot, candidate.candidate_id
        if slot is None or (candidate.polarity == "holds" and candidate.value is None):
            kept.add(cid)
            continue
        in_slot = holders.setdefault(slot, [])
        same = next(
            (h for h in in_slot if h.polarity == candidate.polarity and same_value(h.value, candidate.value)),
            None,
        )
        if same is not None:
            duplicates.append(DuplicateSkipped(candidate_id=cid, existing_memory_id=same.memory_id))
            continue
        if candidate.polarity == "holds":
            for holder in in_slot:
                supersessions.append(
                    Supersession(memory_id=holder.memory_id, candidate_id=cid, successor_id=planned[cid])
                )
                end(slot, holder)
            holders[slot] = [_Holder(planned[cid], candidate.value, "holds")]
            kept.add(cid)
            continue
        ending = [
            h
            for h in in_slot
            if h.polarity == "holds" and (candidate.value is None or same_value(h.value, candidate.value))
        ]
        if ending:
            for holder in ending:
                invalidations.append(Invalidation(memory_id=holder.memory_id, candidate_id=cid))
                end(slot, holder)
            holders[slot] = [h for h in in_slot if h not in ending]
            continue
        already = ended_here.get((slot, candidate.value.casefold())) if candidate.value is not None else None
        if already is not None:
            duplicates.append(DuplicateSkipped(candidate_id=cid, existing_memory_id=already))
            continue
        in_slot.append(_Holder(planned[cid], candidate.value, "ended"))
        kept.add(cid)
    return CandidatesReconciled(
        considered=list(current),
        kept=[c.candidate_id for c in candidates if c.candidate_id in kept],
        duplicates=duplicates,
        supersessions=supersessions,
        invalidations=invalidations,
    )
