"""``memsaga eval extract``: the fixture, the matching rule, the scores and the CLI's errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.extraction_eval import (
    Case,
    ExtractionFixture,
    FixtureInvalid,
    Memory,
    evaluate,
    load_fixture,
    match_count,
)
from sagas.memory_extraction.world_time import is_stated_date

RESIDENCE = Memory(text="User lives in Berlin", kind="fact", slot="residence", value="Berlin")


@pytest.fixture(scope="module")
def fixture() -> ExtractionFixture:
    return load_fixture()


def test_the_rule_extractor_meets_its_targets_on_the_fixture(fixture: ExtractionFixture) -> None:
    result = evaluate(fixture)

    assert result.overall.recall is not None and result.overall.recall >= 0.85
    assert result.overall.precision is not None and result.overall.precision >= 0.95
    assert result.overall.expected == sum(len(case.expected) for case in fixture.cases)


def test_the_fixture_has_the_size_and_coverage_issue_14_asks_for(fixture: ExtractionFixture) -> None:
    memories = [memory for case in fixture.cases for memory in case.expected]
    slots = {memory.slot for memory in memories if memory.slot is not None}

    assert len(fixture.cases) >= 80
    assert sum(1 for case in fixture.cases if not case.expected) >= 15
    assert {"residence", "employer", "job_title", "name", "age", "birthday", "diet"} <= slots
    assert any(slot.startswith("preference:") for slot in slots)
    assert any(slot.startswith("favourite:") for slot in slots)
    assert {slot.count(":") for slot in slots if slot.startswith("relation:")} == {1, 2, 3}
    assert {"holds", "ended"} == {memory.polarity for memory in memories}
    stated = [memory.valid_from for memory in memories if memory.valid_from is not None]
    assert all(is_stated_date(value) for value in stated)
    forms = {re.sub(r"\d", "9", value) for value in stated}
    assert {"9999", "9999-99", "9999-99-99", "--99", "--99-99"} <= forms


def test_a_match_needs_every_part_equal_but_case_and_spacing_of_text_and_value() -> None:
    same = RESIDENCE.model_copy(update={"text": "user  lives in BERLIN.", "value": "berlin"})

    assert RESIDENCE.matches(same)
    for change in (
        {"kind": "identity"},
        {"slot": None},
        {"slot": "employer"},
        {"value": "Lisbon"},
        {"value": None},
        {"polarity": "ended"},
        {"valid_from": "2024"},
        {"text": "User lives in Lisbon"},
    ):
        assert not RESIDENCE.matches(RESIDENCE.model_copy(update=change)), change


def test_matching_is_one_to_one() -> None:
    missed, unexpected = match_count([RESIDENCE], [RESIDENCE, RESIDENCE])

    assert missed == [] and unexpected == [RESIDENCE]


def test_scores_per_kind_and_overall() -> None:
    cases = [
        Case(id="hit", text="I live in Berlin.", expected=[RESIDENCE]),
        Case(id="miss", text="In Prague.", expected=[RESIDENCE.model_copy(update={"value": "Prague"})]),
        Case(id="extra", text="I love hiking.", expected=[]),
        Case(id="none", text="Do you like Berlin?", expected=[]),
    ]

    result = evaluate(ExtractionFixture(version=1, cases=cases))

    by_kind = {score.kind: score for score in result.kinds}
    assert (by_kind["fact"].expected, by_kind["fact"].extracted, by_kind["fact"].matched) == (2, 1, 1)
    assert (by_kind["fact"].precision, by_kind["fact"].recall) == (1.0, 0.5)
    assert (by_kind["preference"].precision, by_kind["preference"].recall) == (0.0, None)
    assert (result.overall.precision, result.overall.recall) == (0.5, 0.5)
    assert [failure.id for failure in result.failures] == ["miss", "extra"]


def test_repeated_case_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        ExtractionFixture(version=1, cases=[Case(id="a", text="x", expected=[])] * 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no fixture at"),
        ("{", "is not JSON: Expecting property name"),
        (
            '{"version": 1, "cases": [{"id": "a"}]}',
            "is not an extraction fixture: cases.0.text: Field required",
        ),
        ('{"version": 2, "cases": []}', "is not an extraction fixture: version"),
        ("[]", "is not an extraction fixture"),
    ],
)
def test_bad_fixtures_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    path = tmp_path / "extraction.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    env = {"MEMSAGA_STATE_DIR": str(tmp_path)}

    with pytest.raises(FixtureInvalid, match=message):
        load_fixture(path)
    result = CliRunner().invoke(app, ["eval", "extract", "--fixture", str(path)], env=env)
    monkeypatch.setattr(sys, "argv", ["memsaga", "eval", "extract", "--json"])  # how errors know --json
    as_json = CliRunner().invoke(app, ["eval", "extract", "--fixture", str(path), "--json"], env=env)

    assert isinstance(result.exception, SystemExit) and result.exit_code == 2  # usage, not a crash
    assert "Traceback" not in result.output and message in result.output
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"] == "FixtureInvalid"


def test_the_command_prints_a_table_and_stable_json(tmp_path: Path) -> None:
    path = tmp_path / "extraction.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "cases": [{"id": "a", "text": "I live in Berlin.", "expected": [RESIDENCE.model_dump()]}],
            }
        ),
        encoding="utf-8",
    )
    env = {"MEMSAGA_STATE_DIR": str(tmp_path), "COLUMNS": "200"}

    table = CliRunner().invoke(app, ["eval", "extract", "--fixture", str(path)], env=env)
    as_json = CliRunner().invoke(app, ["eval", "extract", "--fixture", str(path), "--json"], env=env)

    assert table.exit_code == 0 and "overall" in table.output and "precision" in table.output
    data = json.loads(as_json.stdout)
    assert set(data) == {"fixture", "extractor", "cases", "overall", "kinds", "failures"}
    assert data["overall"] == {
        "kind": "overall", "expected": 1, "extracted": 1, "matched": 1, "precision": 1.0, "recall": 1.0,
    }  # fmt: skip
    assert data["failures"] == []
