"""Add corpus rows for every registered event version that has none; never touch existing files.

Run it after registering a new event version (docs/evolution.md, The event corpus)::

    .venv/bin/python -m tests.corpus.generate [EVENTS_DIR]

Each new file gets one plain row and, when the version has personal fields, one sealed with the
corpus's test key as the store seals today (redacted payload, ciphertext in the ``sealed``
column). Files written before that column (eventstore/migrations/0007) hold sealed rows of the
first layout (values under ``"$sealed"`` in the payload); for each such version a second file,
``<Type>.v<N>.sealed.json``, was added once with a row of the current layout. Payloads come from
the version's schema (every field filled, lists with one item), normalised by the model as an
append would.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventstore import EventPayload, SchemaRegistry
from eventstore.encryption import SEALED, seal_event
from eventstore.personal import personal_paths
from memsaga.bootstrap import build_registry
from memsaga.schema import example_payload, registered, schema_of
from tests.corpus.corpus import EVENTS, Row, corpus_file, corpus_key, load_rows

NAMESPACE = uuid.UUID("a3c9e0b2-5f41-4d8e-9a77-1c2b3d4e5f60")
BASE_TIME = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
CORRELATION = "extract-corpus"

USER_EVENTS = frozenset({"UserForgetRequested", "UserForgotten"})
PLAIN, SEALED_COLUMN = "plain", "sealed-column"
"""How a new row is stored: without personal data sealed, or sealed into the ``sealed`` column.
(The first layout's rows, sealed in the payload before migration 0007, were written once with
``eventstore.encryption.seal_payload`` and are never written again.)"""


def generate(registry: SchemaRegistry, directory: Path = EVENTS) -> list[Path]:
    """Write a file for each version of ``registry`` without one; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = load_rows(directory)
    position = max((int(r["position"]) for r in existing), default=0)
    versions: dict[str, int] = {}
    for row in existing:
        versions[row["stream_id"]] = max(int(row["version"]), versions.get(row["stream_id"], 0))
    with_column = {(r["event_type"], int(r["event_version"])) for r in existing if r.get("sealed")}
    written = []
    for (event_type, version), model in registered(registry).items():
        personal = bool(personal_paths(model))
        path = corpus_file(directory, event_type, version)
        if not path.exists():
            layouts = (PLAIN, SEALED_COLUMN) if personal else (PLAIN,)
        elif personal and (event_type, version) not in with_column:
            path = path.with_name(f"{event_type}.v{version}.sealed.json")  # the one-time addition
            layouts = (SEALED_COLUMN,)
        else:
            continue
        rows = []
        for layout in layouts:
            position += 1
            row = make_row(model, position, layout=layout)
            row["version"] = versions[row["stream_id"]] = versions.get(row["stream_id"], 0) + 1
            rows.append(row)
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def make_row(model: type[EventPayload], position: int, *, layout: str) -> Row:
    """One stored row of ``model``'s version at ``position`` in ``layout`` (a memory's in a
    stream of its own, at version 1; the caller numbers the shared episode and user streams)."""
    key = corpus_key()
    suffix = {PLAIN: "", SEALED_COLUMN: "-sealed-column"}[layout]
    tag = f"{model.event_type}-v{model.event_version}{suffix}".lower()
    event_id = uuid.uuid5(NAMESPACE, tag)
    payload = model.model_validate(_payload(model, tag, key.user_id)).model_dump(mode="json")
    metadata: dict[str, Any] = {"workflow_id": CORRELATION}
    ciphertext = None
    if layout == SEALED_COLUMN:
        sealed = seal_event(payload, personal_paths(model), key.key, event_id)
        assert sealed is not None, f"{tag}: the example payload fills no personal field"
        payload, ciphertext = sealed
        metadata[SEALED] = True
    occurred = BASE_TIME + timedelta(minutes=position)
    return {
        "event_id": str(event_id),
        "stream_id": _stream(model.event_type, tag),
        "version": 1,
        "position": position,
        "event_type": model.event_type,
        "event_version": model.event_version,
        "correlation_id": CORRELATION,
        "causation_id": CORRELATION,
        "user_id": key.user_id,
        "occurred_at": occurred.isoformat(),
        "recorded_at": (occurred + timedelta(seconds=1)).isoformat(),
        "payload": payload,
        "metadata": metadata,
        **({} if ciphertext is None else {"sealed": base64.b64encode(ciphertext).decode()}),
    }


def _stream(event_type: str, tag: str) -> str:
    if event_type in USER_EVENTS:
        return "user-corpus"
    return f"memory-m-{tag}" if event_type.startswith("Memory") else "episode-e-corpus"


def _payload(model: type[EventPayload], tag: str, user_id: str) -> dict[str, Any]:
    payload = example_payload(schema_of(model))
    fixed: dict[str, Any] = {
        "user_id": user_id,
        "memory_id": f"m-{tag}",
        "episode_id": "e-corpus",
        "workflow_id": CORRELATION,
    }
    if model.event_type == "MemoryCreated":
        fixed["embedder"] = None  # its vector is then not read: the corpus holds no blobs
    return {k: fixed.get(k, v) for k, v in payload.items()}


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else EVENTS
    for path in generate(build_registry(), directory):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
