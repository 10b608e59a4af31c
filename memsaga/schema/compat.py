"""What changed between a committed schema and the model's schema now, field by field.

Only changes a stored event or a reader could notice count: titles, descriptions and examples
(docstrings) are ignored. Each change names the field (a dotted path, ``[]`` for list items,
``{}`` for dict values) and its kind; :data:`ADDITIVE` is the one kind an unreleased version may
take (an optional field added), every other kind breaks old events or old readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memsaga.schema.generate import PERSONAL, Schema

DOCS = frozenset({"title", "description", "examples"})
"""Keywords that document and do not constrain."""
_STRUCTURE = frozenset(
    {"properties", "required", "items", "additionalProperties", "anyOf", "enum", "const", "$ref", "$defs"}
)
_ROOT = "<payload>"
_DEEPEST = 400

FIELD_REMOVED = "field_removed"
FIELD_ADDED_REQUIRED = "field_added_required"
ADDITIVE = "field_added"
BECAME_REQUIRED = "became_required"
BECAME_OPTIONAL = "became_optional"
TYPE_CHANGED = "type_changed"
ENUM_NARROWED = "enum_narrowed"
ENUM_WIDENED = "enum_widened"
PERSONAL_UNMARKED = "personal_unmarked"
PERSONAL_CHANGED = "personal_changed"
CHANGED = "changed"


@dataclass(frozen=True)
class Change:
    """One difference: where, of which kind, and what it is in words."""

    field: str
    kind: str
    detail: str


def normalized(node: Any, *, names: bool = False) -> Any:
    """``node`` without documentation keywords (``names``: its keys are field or def names)."""
    if isinstance(node, dict):
        return {
            k: normalized(v, names=k in ("properties", "$defs") and not names)
            for k, v in node.items()
            if names or k not in DOCS
        }
    if isinstance(node, list):
        return [normalized(v) for v in node]
    return node


def changes(old: Schema, new: Schema) -> list[Change]:
    """Every difference that matters between ``old`` (committed) and ``new`` (the model's)."""
    old, new = normalized(old), normalized(new)
    if old == new:
        return []
    walker = _Diff(old.get("$defs", {}), new.get("$defs", {}))
    walker.node(old, new, _ROOT)
    return walker.found or [Change(_ROOT, CHANGED, "the schema changed")]


class _Diff:
    def __init__(self, old_defs: dict[str, Schema], new_defs: dict[str, Schema]) -> None:
        self.old_defs, self.new_defs = old_defs, new_defs
        self.found: list[Change] = []

    def add(self, field: str, kind: str, detail: str) -> None:
        self.found.append(Change(field, kind, detail))

    def node(self, old: Schema, new: Schema, field: str) -> None:
        if len(field) > _DEEPEST:  # a recursive model: its fields were compared higher up
            return
        old, new = _resolve(old, self.old_defs), _resolve(new, self.new_defs)
        self._personal(old.get(PERSONAL), new.get(PERSONAL), field)
        if "properties" in old or "properties" in new:
            self._object(old, new, field)
        for key, mark in (("items", "[]"), ("additionalProperties", "{}")):
            o, n = old.get(key), new.get(key)
            if isinstance(o, dict) and isinstance(n, dict):
                self.node(o, n, f"{field}{mark}")
            elif o != n:
                self.add(field, TYPE_CHANGED, f"{key} changed from {_show(o)} to {_show(n)}")
        self._enum(_values(old), _values(new), field)
        self._union(old.get("anyOf"), new.get("anyOf"), field)
        self._keywords(old, new, field)

    def _personal(self, old: Any, new: Any, field: str) -> None:
        if old == new:
            return
        if old and not new:
            self.add(
                field, PERSONAL_UNMARKED, "is no longer marked personal (it would be stored in plaintext)"
            )
        elif new and not old:
            self.add(field, PERSONAL_CHANGED, "is newly marked personal (old events hold it in plaintext)")
        else:
            self.add(field, PERSONAL_CHANGED, f"personal marker changed from {old} to {new} (blind index)")

    def _object(self, old: Schema, new: Schema, field: str) -> None:
        o_props, n_props = old.get("properties", {}), new.get("properties", {})
        o_req, n_req = set(old.get("required", ())), set(new.get("required", ()))
        prefix = "" if field == _ROOT else f"{field}."
        for name in o_props:
            if name not in n_props:
                self.add(prefix + name, FIELD_REMOVED, "was removed or renamed")
        for name in n_props:
            if name in o_props:
                self.node(o_props[name], n_props[name], prefix + name)
                if name in n_req and name not in o_req:
                    self.add(prefix + name, BECAME_REQUIRED, "became required")
                elif name in o_req and name not in n_req:
                    self.add(prefix + name, BECAME_OPTIONAL, "became optional (old readers require it)")
            elif name in n_req:
                self.add(prefix + name, FIELD_ADDED_REQUIRED, "is a new required field")
            else:
                self.add(prefix + name, ADDITIVE, "is a new optional field")

    def _enum(self, old: Any, new: Any, field: str) -> None:
        if old == new:
            return
        if old is None or new is None:
            self.add(field, TYPE_CHANGED, f"enum changed from {_show(old)} to {_show(new)}")
            return
        if removed := [v for v in old if v not in new]:
            self.add(field, ENUM_NARROWED, f"enum lost {removed}")
        if added := [v for v in new if v not in old]:
            self.add(field, ENUM_WIDENED, f"enum gained {added} (old readers refuse them)")

    def _union(self, old: Any, new: Any, field: str) -> None:
        if old == new:
            return
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            for o, n in zip(old, new, strict=True):
                self.node(o, n, field)
            return
        self.add(field, TYPE_CHANGED, f"type changed from {_show(old)} to {_show(new)}")

    def _keywords(self, old: Schema, new: Schema, field: str) -> None:
        skip = _STRUCTURE | {PERSONAL}
        for key in sorted((set(old) | set(new)) - skip):
            o, n = old.get(key), new.get(key)
            if o != n:
                kind = TYPE_CHANGED if key in ("type", "format") else CHANGED
                self.add(field, kind, f"{key} changed from {_show(o)} to {_show(n)}")


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """``node`` with its ``$ref`` replaced by the definition's keywords."""
    ref = node.get("$ref")
    if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
        return node
    rest = {k: v for k, v in node.items() if k != "$ref"}
    return {**defs.get(ref.removeprefix("#/$defs/"), {}), **rest}


def _values(node: Schema) -> list[Any] | None:
    """The values a node allows when it lists them (``Literal["a"]`` is ``const``, not ``enum``)."""
    if "enum" in node:
        return list(node["enum"])
    return [node["const"]] if "const" in node else None


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)
