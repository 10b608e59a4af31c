"""JSON Schemas of registered payload models, with personal fields marked.

A schema is pydantic's validation schema of the model, plus ``x-event-type`` and
``x-event-version`` at the top and ``x-personal`` on each personal field
(:mod:`eventstore.personal`): ``{"indexed": false}`` for ``PersonalStr``, ``{"indexed": true}``
for ``IndexedPersonalStr``. The marker sits on the property (or the list item / dict value) that
holds the string, in the model's own definition, so a nested model is marked once in ``$defs``.
"""

from __future__ import annotations

from typing import Any

from eventstore import EventPayload, SchemaRegistry
from eventstore.personal import ITEMS, personal_paths

Schema = dict[str, Any]
Key = tuple[str, int]
PERSONAL = "x-personal"
EVENT_TYPE = "x-event-type"
EVENT_VERSION = "x-event-version"


def registered(registry: SchemaRegistry) -> dict[Key, type[EventPayload]]:
    """Every (event type, version) of ``registry`` and its model, sorted."""
    return registry.models()


def schema_of(model: type[EventPayload]) -> Schema:
    """The committed form of ``model``'s schema."""
    schema = model.model_json_schema(mode="validation")
    defs: dict[str, Schema] = schema.get("$defs", {})
    for personal in personal_paths(model):
        _mark(schema, list(personal.path), defs, personal.indexed)
    return {EVENT_TYPE: model.event_type, EVENT_VERSION: model.event_version, **schema}


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs[ref.removeprefix("#/$defs/")]
    return node


def _mark(node: Schema, path: list[str], defs: dict[str, Schema], indexed: bool) -> None:
    """Set the personal marker on the node ``path`` leads to (through refs, unions and containers)."""
    if not path:
        node[PERSONAL] = {"indexed": indexed}
        return
    node = _resolve(node, defs)
    for branch in node.get("anyOf", ()):
        if branch.get("type") != "null":
            _mark(branch, path, defs, indexed)
    head, rest = path[0], path[1:]
    if head == ITEMS:
        for container in ("items", "additionalProperties"):
            if isinstance(node.get(container), dict):
                _mark(node[container], rest, defs, indexed)
    elif head in node.get("properties", {}):
        _mark(node["properties"][head], rest, defs, indexed)


def example_payload(schema: Schema) -> dict[str, Any]:
    """A payload that fits ``schema``: every property given, lists with one item (so that nested
    fields are present), optional ones too. What the upcaster check and the corpus start from."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    value = _example(schema, defs, "payload")
    assert isinstance(value, dict)
    return value


_FORMATS = {
    "date-time": "2026-01-02T03:04:05Z",
    "date": "2026-01-02",
    "uuid": "00000000-0000-4000-8000-000000000001",
}


def _example(node: Schema, defs: dict[str, Schema], name: str) -> Any:
    node = _resolve(node, defs)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"] or node["anyOf"]
        return _example(branches[0], defs, name)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        props: dict[str, Schema] = node.get("properties", {})
        if props:
            return {key: _example(sub, defs, key) for key, sub in props.items()}
        extra = node.get("additionalProperties")
        return {"key": _example(extra, defs, name)} if isinstance(extra, dict) else {}
    if kind == "array":
        items = node.get("items")
        return [_example(items, defs, name)] if isinstance(items, dict) else []
    if kind == "string":
        return _FORMATS.get(node.get("format", ""), f"{name}-1")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return False
    return None
