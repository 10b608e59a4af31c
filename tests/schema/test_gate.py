"""The schema gate (``memsaga schema check``): the committed schemas match today's models, and
each way of breaking a released event version is caught with a message that says what to do."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

from eventstore import EventPayload, SchemaRegistry
from eventstore.personal import IndexedPersonalStr, PersonalStr
from memsaga.bootstrap import build_registry
from memsaga.cli import app
from memsaga.schema import check, dump, registered, schema_file, schema_of
from memsaga.schema.gate import RELEASED_FILE, CheckReport
from sagas.forgetting import register_forget_events
from sagas.memory_extraction.events import register_events
from sagas.reextraction import register_reextraction_events

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def test_the_committed_schemas_pass_the_gate() -> None:
    report = check(build_registry(), SCHEMAS)

    assert report.problems == [], "\n".join(p.message for p in report.problems)
    assert report.checked == len(list(SCHEMAS.glob("*.v*.json")))


def test_the_cli_check_prints_its_documented_json(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    (tmp_path / "schemas" / "MemorySuperseded.v1.json").unlink()

    runner = CliRunner()

    ok = runner.invoke(app, ["schema", "check", "--json"])
    broken = runner.invoke(app, ["schema", "check", "--json", "--dir", str(tmp_path / "schemas")])
    missing = runner.invoke(app, ["schema", "check", "--dir", str(tmp_path / "nowhere")])

    assert ok.exit_code == 0, ok.output
    checked = len(registered(build_registry()))
    assert json.loads(ok.stdout) == {
        "ok": True,
        "directory": str(SCHEMAS),
        "checked": checked,
        "problems": [],
    }
    assert broken.exit_code == 1
    problem = json.loads(broken.stdout)["problems"][0]
    assert problem["kind"] == "schema_missing" and problem["event_type"] == "MemorySuperseded"
    assert (problem["version"], problem["field"]) == (1, None)
    assert "run `memsaga schema dump`" in problem["message"]
    assert missing.exit_code == 1 and isinstance(missing.exception, SystemExit)  # a message, no traceback
    assert "no schema folder at" in missing.stderr and "run `memsaga schema dump`" in missing.stderr


# --- A copy of a released payload model with a renamed field -----------------------------------


class MemorySupersededRenamed(EventPayload):
    """``MemorySuperseded`` v1 as a careless edit would leave it: ``successor_id`` renamed."""

    event_type = "MemorySuperseded"
    memory_id: str
    user_id: str
    replaced_by: str
    valid_to: datetime
    episode_id: str


class _Swapping(SchemaRegistry):
    """memsaga's registry with some models swapped for copies of the same type and version."""

    def __init__(self, *swaps: type[EventPayload]) -> None:
        super().__init__()
        self._swaps = {(m.event_type, m.event_version): m for m in swaps}

    def register(self, model: Any) -> Any:
        return super().register(self._swaps.get((model.event_type, model.event_version), model))


def swapped(*swaps: type[EventPayload]) -> SchemaRegistry:
    """Every event type memsaga registers (as :func:`build_registry`), with ``swaps`` in place."""
    return register_reextraction_events(register_forget_events(register_events(_Swapping(*swaps))))


def test_renaming_a_field_of_a_released_version_fails_with_what_to_do() -> None:
    report = check(swapped(MemorySupersededRenamed), SCHEMAS)

    by_field = {p.field: p for p in report.problems}
    assert set(by_field) == {"successor_id", "replaced_by"}
    removed = by_field["successor_id"]
    assert (removed.kind, removed.event_type, removed.version) == ("field_removed", "MemorySuperseded", 1)
    assert removed.message.startswith("MemorySuperseded v1: field 'successor_id' was removed or renamed.")
    assert "v1 is released" in removed.message
    assert "add MemorySuperseded v2 with this change and an upcaster from v1 instead" in removed.message
    assert by_field["replaced_by"].kind == "field_added_required"


# --- Each kind of failure, on a small registry of its own --------------------------------------


class NoteV1(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int


class NoteRetyped(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: str


class NoteNarrowed(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy"]
    count: int


class NoteRequired(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int
    author: str


class NoteOptional(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int
    author: str | None = None


class NotePlain(EventPayload):
    event_type = "Note"
    text: str
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int


class NoteNotIndexed(EventPayload):
    event_type = "Note"
    text: PersonalStr
    topic: PersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int


class NoteRedocumented(EventPayload):
    """Only the documentation changed: the schema that matters is the same."""

    event_type = "Note"
    text: PersonalStr
    topic: IndexedPersonalStr | None = None
    mood: Literal["happy", "sad"]
    count: int


class NoteV2(EventPayload):
    event_type = "Note"
    event_version = 2
    text: PersonalStr
    mood: Literal["happy", "sad"]
    count: int


class NoteV2Optional(EventPayload):
    event_type = "Note"
    event_version = 2
    text: PersonalStr
    mood: Literal["happy", "sad"]
    count: int
    author: str | None = None


class NoteV2Removed(EventPayload):
    event_type = "Note"
    event_version = 2
    text: PersonalStr
    mood: Literal["happy", "sad"]


def note_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "topic"}


def registry(*models: type[EventPayload], upcast: bool = True) -> SchemaRegistry:
    reg = SchemaRegistry()
    for model in models:
        reg.register(model)
    if upcast:
        reg.register_upcaster("Note", 1, note_v1_to_v2)
    return reg


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A schema folder where Note v1 is committed and released (the first dump releases it)."""
    report = dump(registry(NoteV1), tmp_path)
    assert [p.name for p in report.written] == ["Note.v1.json"] and report.refused == []
    assert json.loads((tmp_path / RELEASED_FILE).read_text()) == {"released": {"Note": 1}}
    return tmp_path


def only(report: CheckReport) -> tuple[str, str | None, str]:
    assert len(report.problems) == 1, [p.message for p in report.problems]
    problem = report.problems[0]
    return problem.kind, problem.field, problem.message


def test_personal_fields_are_marked_in_the_schema() -> None:
    schema = schema_of(NoteV1)
    assert schema["properties"]["text"]["x-personal"] == {"indexed": False}
    assert schema["properties"]["topic"]["x-personal"] == {"indexed": True}
    assert "x-personal" not in schema["properties"]["count"]
    extracted = json.loads((SCHEMAS / "CandidatesExtracted.v1.json").read_text())
    candidate = extracted["$defs"]["Candidate"]["properties"]  # nested models are marked once, in $defs
    assert candidate["text"]["x-personal"] == {"indexed": False}
    assert candidate["attributes"]["additionalProperties"]["x-personal"] == {"indexed": False}
    assert "x-personal" not in candidate["candidate_id"]


@pytest.mark.parametrize(
    ("model", "kind", "field", "words"),
    [
        (NoteRetyped, "type_changed", "count", "type changed from 'integer' to 'string'"),
        (NoteNarrowed, "enum_narrowed", "mood", "enum lost ['sad']"),
        (NoteRequired, "field_added_required", "author", "is a new required field"),
        (NoteOptional, "field_added", "author", "is a new optional field"),
        (NotePlain, "personal_unmarked", "text", "no longer marked personal"),
        (NoteNotIndexed, "personal_changed", "topic", "blind index"),
    ],
)
def test_a_breaking_change_to_a_released_version_fails(
    released: Path, model: type[EventPayload], kind: str, field: str, words: str
) -> None:
    before = schema_file(released, "Note", 1).read_text()

    found = only(check(registry(model), released))
    refused = dump(registry(model), released)

    assert found[:2] == (kind, field)
    assert found[2].startswith(f"Note v1: field '{field}' ") and words in found[2]
    assert "v1 is released" in found[2] and "add Note v2 with this change and an upcaster from v1" in found[2]
    assert [p.message for p in refused.refused] == [found[2]] and refused.written == []
    assert schema_file(released, "Note", 1).read_text() == before  # dump never rewrites it


def test_a_documentation_change_is_not_a_change(released: Path) -> None:
    assert check(registry(NoteRedocumented), released).problems == []


def test_an_unreleased_latest_version_takes_optional_fields_only(released: Path) -> None:
    dump(registry(NoteV1, NoteV2), released)
    assert check(registry(NoteV1, NoteV2), released).problems == []

    stale = only(check(registry(NoteV1, NoteV2Optional), released))
    assert stale[0] == "schema_stale" and "run `memsaga schema dump`" in stale[2]
    assert dump(registry(NoteV1, NoteV2Optional), released).written == [schema_file(released, "Note", 2)]
    assert check(registry(NoteV1, NoteV2Optional), released).problems == []

    problems = check(registry(NoteV1, NoteV2Removed), released).problems
    removed = next(p for p in problems if p.kind == "field_removed")
    assert removed.field == "count" and "v2 is unreleased" in removed.message
    assert "add Note v3 with this change and an upcaster from v2 instead" in removed.message
    assert {p.kind for p in problems} == {"field_removed", "upcaster_invalid"}  # v1's upcaster keeps `count`


def test_a_version_without_an_upcaster_chain_to_the_latest_fails(released: Path) -> None:
    dump(registry(NoteV1, NoteV2), released)

    kind, field, message = only(check(registry(NoteV1, NoteV2, upcast=False), released))

    assert (kind, field) == ("no_upcaster_chain", None)
    assert message.startswith("Note v1 has no upcaster chain to v2 (the latest): it stops at v1")


def test_an_upcaster_that_yields_an_invalid_latest_payload_fails(released: Path) -> None:
    reg = registry(NoteV1, NoteV2, upcast=False)
    reg.register_upcaster("Note", 1, lambda payload: payload)  # keeps `topic`, which v2 forbids
    dump(reg, released)

    kind, _, message = only(check(reg, released))

    assert kind == "upcaster_invalid" and "Note v1: upcasting an example v1 payload to v2 fails" in message


def test_a_model_without_a_committed_schema_fails(released: Path) -> None:
    kind, _, message = only(check(registry(NoteV1, NoteV2), released))

    assert kind == "schema_missing"
    assert message.startswith("Note v2 is registered but has no committed schema")
    assert message.endswith("run `memsaga schema dump`")


def test_a_committed_schema_without_a_model_fails(released: Path) -> None:
    dump(registry(NoteV1, NoteV2), released)

    kind, _, message = only(check(registry(NoteV2, upcast=False), released))

    assert kind == "model_missing"
    assert message.startswith("Note v1 has a committed schema") and "a version was deleted" in message
