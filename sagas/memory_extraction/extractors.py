"""Extractors: an episode's text in, memory candidates out.

The :class:`Extractor` protocol, the candidate helpers every extractor uses, and the
rule-based extractor (deterministic patterns of :mod:`sagas.memory_extraction.rules`, no
network). The ``http`` extractor and choosing one by name live in :mod:`adapters`.
"""

from __future__ import annotations

from typing import Protocol, get_args

from sagas.memory_extraction.events import Candidate, MemoryKind, Polarity
from sagas.memory_extraction.ports import Heartbeat
from sagas.memory_extraction.rules import about_someone, match_clause
from sagas.memory_extraction.text import (
    Finding,
    candidate_id_for,
    clauses,
    content_hash,
    find_identifiers,
    is_assertion,
    is_statement,
    sensitivity,
    user_sentences,
)

KINDS: frozenset[str] = frozenset(get_args(MemoryKind))
"""Every memory kind, for extractors that must check a kind they were told."""

# --- Candidates ----------------------------------------------------------------------------------


def make_candidate(
    text: str,
    kind: MemoryKind,
    attributes: dict[str, str] | None = None,
    flagged_by: str | None = None,
    *,
    slot: str | None = None,
    value: str | None = None,
    polarity: Polarity = "holds",
    valid_from: str | None = None,
) -> Candidate:
    """A candidate with its content hash, id and sensitivity (ours, else ``flagged_by``'s)."""
    digest = content_hash(text)
    reason = sensitivity(kind, text) or flagged_by
    return Candidate(
        candidate_id=candidate_id_for(digest),
        text=text,
        kind=kind,
        content_hash=digest,
        sensitive=reason is not None,
        sensitivity_reason=reason,
        attributes=attributes or {},
        slot=slot,
        value=value,
        polarity=polarity,
        valid_from=valid_from,
    )


def unique(candidates: list[Candidate]) -> list[Candidate]:
    """``candidates`` without repeats of a content hash, first occurrence kept."""
    seen: dict[str, Candidate] = {}
    for candidate in candidates:
        seen.setdefault(candidate.content_hash, candidate)
    return list(seen.values())


class Extractor(Protocol):
    """Finds memory candidates in an episode's text; ``name`` is recorded with what it found."""

    name: str

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]: ...


# --- Rules ---------------------------------------------------------------------------------------


def find_memories(text: str) -> list[Finding]:
    """Every fact the rule table finds in ``text``, in order (repeats included).

    A clause no rule reads may be about a relative named earlier in the episode ("My brother
    Tom is a doctor. He lives in Porto."): it is read again with the relative written out.
    """
    findings: list[Finding] = []
    people: list[tuple[str, str]] = []  # named relatives, in order of first mention
    for sentence in user_sentences(text):
        if not is_statement(sentence):
            continue
        for clause in clauses(sentence):
            if not is_assertion(clause):
                continue
            found = match_clause(clause)
            if not found and (about := about_someone(clause, people)) is not None:
                found = match_clause(about)
            people.extend(f.about for f in found if f.about is not None and f.about not in people)
            findings.extend(found)
        findings.extend(find_identifiers(sentence))
    return findings


class RuleBasedExtractor:
    """Deterministic, offline extraction of first-person facts with the rule table."""

    name: str = "rules"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        """Candidates for the facts in ``text``: same text, same candidates, ids and order."""
        if heartbeat is not None:
            heartbeat()
        return rule_candidates(text)


def rule_candidates(text: str) -> list[Candidate]:
    """What :class:`RuleBasedExtractor` finds in ``text``, synchronously."""
    return unique([_candidate(finding) for finding in find_memories(text)])


def _candidate(finding: Finding) -> Candidate:
    return make_candidate(
        finding.text,
        finding.kind,
        finding.attributes,
        slot=finding.slot,
        value=finding.value,
        polarity=finding.polarity,
        valid_from=finding.valid_from,
    )
