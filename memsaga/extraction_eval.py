"""``memsaga eval extract``: precision and recall of the rule extractor on a fixture of sentences.

The fixture (``tests/fixtures/extraction.json``, version 1) holds what users say and every
memory each should give::

    {"version": 1, "description": "...",
     "cases": [{"id": "residence-anymore", "text": "I don't live in Lisbon anymore.",
                "expected": [{"text": "User no longer lives in Lisbon", "kind": "fact",
                              "slot": "residence", "value": "Lisbon", "polarity": "ended",
                              "valid_from": null}]}]}

An extracted candidate matches an expected memory of its case when kind, slot, value
(casefolded), polarity and valid_from are equal and the texts are equal after
:func:`~sagas.memory_extraction.text.normalise`; each expected memory is matched at most once.
Precision is matched / extracted and recall matched / expected, per kind (the kind of the
expected memory for recall, of the candidate for precision) and overall; ``None`` when there
is nothing to divide by. Pure: the fixture and the rule extractor in, a :class:`EvalResult` out.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from memsaga.errors import MemsagaError
from sagas.memory_extraction.events import Candidate, MemoryKind, Polarity
from sagas.memory_extraction.extractors import rule_candidates
from sagas.memory_extraction.text import normalise

FIXTURE_PATH = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "extraction.json"
"""The fixture in a source checkout."""


class FixtureInvalid(MemsagaError):
    """The fixture file is missing, is not JSON, or does not have the fixture's shape."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Memory(_Frozen):
    """An expected memory, or an extracted candidate in the same shape."""

    text: str
    kind: MemoryKind
    slot: str | None = None
    value: str | None = None
    polarity: Polarity = "holds"
    valid_from: str | None = None

    @classmethod
    def of(cls, candidate: Candidate) -> Memory:
        """The parts of ``candidate`` the evaluation compares."""
        return cls(
            text=candidate.text,
            kind=candidate.kind,
            slot=candidate.slot,
            value=candidate.value,
            polarity=candidate.polarity,
            valid_from=candidate.valid_from,
        )

    def matches(self, other: Memory) -> bool:
        """Same kind, slot, casefolded value, polarity, valid_from, and text after ``normalise``."""
        return (
            self.kind == other.kind
            and self.slot == other.slot
            and (self.value or "").casefold() == (other.value or "").casefold()
            and (self.value is None) == (other.value is None)
            and self.polarity == other.polarity
            and self.valid_from == other.valid_from
            and normalise(self.text) == normalise(other.text)
        )


class Case(_Frozen):
    """One thing a user says (a sentence or a short episode) and the memories it should give."""

    id: str
    text: str
    expected: list[Memory]


class ExtractionFixture(_Frozen):
    """The fixture file."""

    version: Literal[1]
    description: str = ""
    cases: list[Case]

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        repeated = sorted(case_id for case_id, n in Counter(c.id for c in self.cases).items() if n > 1)
        if repeated:
            raise ValueError(f"case ids are repeated: {', '.join(repeated)}")
        return self


class Score(_Frozen):
    """Counts and ratios of one kind (or ``overall``)."""

    kind: str
    expected: int
    extracted: int
    matched: int
    """Candidates that matched an expected memory (a match is of one kind, so one count serves both)."""
    precision: float | None
    recall: float | None


class CaseResult(_Frozen):
    """A case the extractor did not get exactly right: what it missed and what it added."""

    id: str
    text: str
    missed: list[Memory]
    unexpected: list[Memory]


class EvalResult(_Frozen):
    """The evaluation of one fixture: per kind (sorted), overall, and the cases not exactly right."""

    fixture: str
    extractor: str
    cases: int
    overall: Score
    kinds: list[Score]
    failures: list[CaseResult]


def load_fixture(path: Path = FIXTURE_PATH) -> ExtractionFixture:
    """The fixture at ``path``. :raises FixtureInvalid: with a one-line reason."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FixtureInvalid(f"no fixture at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FixtureInvalid(f"cannot read the fixture {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FixtureInvalid(
            f"{path} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    try:
        return ExtractionFixture.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise FixtureInvalid(f"{path} is not an extraction fixture: {where}: {first['msg']}{more}") from None


def match_count(expected: list[Memory], extracted: list[Memory]) -> tuple[list[Memory], list[Memory]]:
    """The expected memories no candidate matched, and the candidates that matched none (one to one)."""
    missed = list(expected)
    unexpected = []
    for memory in extracted:
        index = next((i for i, wanted in enumerate(missed) if wanted.matches(memory)), None)
        if index is None:
            unexpected.append(memory)
        else:
            del missed[index]
    return missed, unexpected


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _score(kind: str, expected: int, extracted: int, missed: int, unexpected: int) -> Score:
    matched = expected - missed
    assert matched == extracted - unexpected  # one to one, within one kind
    return Score(
        kind=kind,
        expected=expected,
        extracted=extracted,
        matched=matched,
        precision=_ratio(matched, extracted),
        recall=_ratio(matched, expected),
    )


def evaluate(fixture: ExtractionFixture, *, source: str = "") -> EvalResult:
    """Precision and recall of the rule extractor on ``fixture``, per kind and overall."""
    counts: dict[str, Counter[str]] = {}
    failures = []
    for case in fixture.cases:
        extracted = [Memory.of(candidate) for candidate in rule_candidates(case.text)]
        missed, unexpected = match_count(case.expected, extracted)
        for field, memories in (
            ("expected", case.expected),
            ("extracted", extracted),
            ("missed", missed),
            ("unexpected", unexpected),
        ):
            for memory in memories:
                counts.setdefault(memory.kind, Counter())[field] += 1
        if missed or unexpected:
            failures.append(CaseResult(id=case.id, text=case.text, missed=missed, unexpected=unexpected))
    total: Counter[str] = sum(counts.values(), Counter())
    kinds = [_score(kind, *(counts[kind][f] for f in _FIELDS)) for kind in sorted(counts)]
    return EvalResult(
        fixture=source,
        extractor="rules",
        cases=len(fixture.cases),
        overall=_score("overall", *(total[f] for f in _FIELDS)),
        kinds=kinds,
        failures=failures,
    )


_FIELDS = ("expected", "extracted", "missed", "unexpected")
