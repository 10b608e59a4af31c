"""The schema gate: committed schemas against the registry's models (``memsaga schema``).

``schemas/<EventType>.v<N>.json`` holds the schema of each registered version as it was
committed (:mod:`memsaga.schema.generate`); ``schemas/released.json`` names, per event type, the
highest version that has been released (``{"released": {"MemoryCreated": 3, ...}}``): that
version and every lower one are frozen. A version above it is unreleased and may still take
optional fields; only the latest version of a type can be unreleased.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from eventstore import SchemaRegistry
from memsaga.schema.compat import ADDITIVE, Change, changes
from memsaga.schema.errors import SchemaDirMissing, SchemaFileInvalid
from memsaga.schema.generate import Key, Schema, example_payload, registered, schema_of

RELEASED_FILE = "released.json"
_NAME = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.json$")
DOC = "docs/evolution.md, Changing an event"

MISSING = "schema_missing"
ORPHAN = "model_missing"
STALE = "schema_stale"
NO_CHAIN = "no_upcaster_chain"
BAD_UPCAST = "upcaster_invalid"


@dataclass(frozen=True)
class Problem:
    """One reason the gate fails: its kind, the version, the field (when one), what to do."""

    kind: str
    event_type: str
    version: int
    field: str | None
    message: str


@dataclass(frozen=True)
class CheckReport:
    """What ``memsaga schema check`` found (its ``--json`` output is :meth:`as_json`)."""

    directory: Path
    checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "directory": str(self.directory),
            "checked": self.checked,
            "problems": [asdict(p) for p in self.problems],
        }


@dataclass(frozen=True)
class DumpReport:
    """What ``memsaga schema dump`` wrote, and what it refused to rewrite (a frozen version)."""

    directory: Path
    written: list[Path]
    unchanged: int
    refused: list[Problem]


def schema_file(directory: Path, event_type: str, version: int) -> Path:
    """Where the committed schema of one version lives."""
    return directory / f"{event_type}.v{version}.json"


def schema_text(schema: Schema) -> str:
    """The file content of a schema (stable: what dump writes and git diffs)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def read_committed(directory: Path) -> dict[Key, Schema]:
    """Every committed schema, by (event type, version).

    :raises SchemaDirMissing: ``directory`` does not exist.
    :raises SchemaFileInvalid: a file is not JSON, or names another version than its file name.
    """
    if not directory.is_dir():
        raise SchemaDirMissing(directory)
    found: dict[Key, Schema] = {}
    for path in sorted(directory.glob("*.v*.json")):
        match = _NAME.match(path.name)
        if match is None:
            continue
        schema = _read_json(path)
        key: Key = (str(match["type"]), int(match["version"]))
        if (schema.get("x-event-type"), schema.get("x-event-version")) != key:
            raise SchemaFileInvalid(path, f"it describes another version than {key[0]} v{key[1]}")
        found[key] = schema
    return found


def read_released(directory: Path) -> dict[str, int]:
    """The highest released version per event type (``released.json``).

    :raises SchemaFileInvalid: the file is missing or malformed.
    """
    path = directory / RELEASED_FILE
    if not path.exists():
        raise SchemaFileInvalid(path, "it is missing (it says which versions are released)")
    released = _read_json(path).get("released")
    if not isinstance(released, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in released.items()
    ):
        raise SchemaFileInvalid(path, 'it must hold {"released": {"<EventType>": <version>, ...}}')
    return released


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaFileInvalid(path, str(exc)) from None
    if not isinstance(value, dict):
        raise SchemaFileInvalid(path, "it is not a JSON object")
    return value


def check(registry: SchemaRegistry, directory: Path) -> CheckReport:
    """Compare ``registry``'s models with the schemas committed in ``directory``.

    :raises SchemaDirMissing: no such folder.
    :raises SchemaFileInvalid: a committed file cannot be read.
    """
    committed = read_committed(directory)
    released = read_released(directory)
    models = registered(registry)
    problems: list[Problem] = []
    for (event_type, version), model in models.items():
        old = committed.get((event_type, version))
        if old is None:
            problems.append(_missing(directory, event_type, version))
        else:
            problems += _compare(registry, released, event_type, version, old, schema_of(model))[1]
    for event_type, version in sorted(committed.keys() - models.keys()):
        problems.append(_orphan(directory, event_type, version))
    for event_type in sorted({t for t, _ in models}):
        problems += upcaster_problems(registry, event_type)
    return CheckReport(directory, len(models), problems)


def _missing(directory: Path, event_type: str, version: int) -> Problem:
    path = schema_file(directory, event_type, version)
    message = (
        f"{event_type} v{version} is registered but has no committed schema ({path}):"
        " run `memsaga schema dump`"
    )
    return Problem(MISSING, event_type, version, None, message)


def _orphan(directory: Path, event_type: str, version: int) -> Problem:
    message = (
        f"{event_type} v{version} has a committed schema ({schema_file(directory, event_type, version)}) but"
        " no registered model: a version was deleted, yet stored events of it stay forever; register its"
        " model again (and its upcaster to the next version)"
    )
    return Problem(ORPHAN, event_type, version, None, message)


def _compare(
    registry: SchemaRegistry,
    released: dict[str, int],
    event_type: str,
    version: int,
    old: Schema,
    new: Schema,
) -> tuple[bool, list[Problem]]:
    """Whether dump may rewrite the committed schema, and the problems the check reports."""
    found = changes(old, new)
    if not found:
        return True, []
    latest = registry.latest_version(event_type) or version
    frozen = version <= released.get(event_type, 0)
    if not frozen and version == latest and all(c.kind == ADDITIVE for c in found):
        names = ", ".join(c.field for c in found)
        message = (
            f"{event_type} v{version} (unreleased) has new optional fields not yet committed ({names}):"
            " run `memsaga schema dump`"
        )
        return True, [Problem(STALE, event_type, version, names, message)]
    return False, [_breaking(event_type, version, latest, frozen, c) for c in found]


def _breaking(event_type: str, version: int, latest: int, frozen: bool, change: Change) -> Problem:
    fix = (
        f"add {event_type} v{latest + 1} with this change and an upcaster from v{latest} instead,"
        f" and restore v{version} as committed ({DOC})"
    )
    if frozen:
        why = f"v{version} is released: stored events and running readers depend on its schema"
    else:
        why = f"v{version} is unreleased, but only optional fields may be added to it"
        fix += (
            f"; if no v{version} event was ever stored anywhere, delete its schema file and run"
            " `memsaga schema dump`"
        )
    message = f"{event_type} v{version}: field '{change.field}' {change.detail}. {why}: {fix}"
    return Problem(change.kind, event_type, version, change.field, message)


def upcaster_problems(registry: SchemaRegistry, event_type: str) -> list[Problem]:
    """Each older version of ``event_type`` whose upcasters do not lead to a valid latest payload."""
    versions = registry.versions(event_type)
    latest = versions[-1]
    latest_model = registry.model_for(event_type, latest)
    problems = []
    for version in versions[:-1]:
        model = registry.model_for(event_type, version)
        assert model is not None and latest_model is not None
        try:
            reached, payload = registry.upcast(event_type, version, example_payload(schema_of(model)))
            if reached == latest:
                latest_model.model_validate(payload)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            message = (
                f"{event_type} v{version}: upcasting an example v{version} payload to v{latest} fails:"
                f" {type(exc).__name__}: {exc}"
            )
            problems.append(Problem(BAD_UPCAST, event_type, version, None, message))
            continue
        if reached != latest:
            message = (
                f"{event_type} v{version} has no upcaster chain to v{latest} (the latest): it stops at"
                f" v{reached}; register an upcaster from v{reached} (SchemaRegistry.register_upcaster)"
            )
            problems.append(Problem(NO_CHAIN, event_type, version, None, message))
    return problems


def dump(registry: SchemaRegistry, directory: Path) -> DumpReport:
    """Write the schema of every registered version that has none, or whose change is allowed
    (documentation only; optional fields of an unreleased latest version). A missing
    ``released.json`` is created with every version registered now released."""
    directory.mkdir(parents=True, exist_ok=True)
    models = registered(registry)
    released_path = directory / RELEASED_FILE
    if not released_path.exists():
        latest: dict[str, int] = {}
        for event_type, version in models:
            latest[event_type] = max(version, latest.get(event_type, 0))
        released_path.write_text(json.dumps({"released": latest}, indent=2) + "\n", encoding="utf-8")
    committed, released = read_committed(directory), read_released(directory)
    written, refused, unchanged = [], [], 0
    for (event_type, version), model in models.items():
        new, path = schema_of(model), schema_file(directory, event_type, version)
        old = committed.get((event_type, version))
        allowed, problems = (
            (True, []) if old is None else _compare(registry, released, event_type, version, old, new)
        )
        if not allowed:
            refused += problems
        elif old is not None and path.read_text(encoding="utf-8") == schema_text(new):
            unchanged += 1
        else:
            path.write_text(schema_text(new), encoding="utf-8")
            written.append(path)
    return DumpReport(directory, written, unchanged, refused)
