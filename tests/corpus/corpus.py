"""The event corpus: stored-format events of every event type and version memsaga ever wrote.

``events/<EventType>.v<N>.json`` is a list of rows of ``memsaga.events`` as the database holds
them, one JSON object per row keyed by column name (:data:`eventstore.columns.COLUMNS`):
uuids and timestamps as text, ``payload`` and ``metadata`` as the stored JSON. A row without a
column (rows older than the column) reads as NULL. Some rows are sealed, as the store seals
personal fields, with the data key in ``corpus_key.json`` (a test key, only ever used here).

Files are written once by ``generate.py`` when a version is registered and never edited after:
they stand for events stored in the past, which never change either.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from eventstore.columns import COLUMNS, Column
from eventstore.encryption import DataKey

CORPUS = Path(__file__).resolve().parent
EVENTS = CORPUS / "events"
KEY_FILE = CORPUS / "corpus_key.json"

Row = dict[str, Any]


def corpus_file(directory: Path, event_type: str, version: int) -> Path:
    """The file of one (event type, stored version)."""
    return directory / f"{event_type}.v{version}.json"


def load_rows(directory: Path = EVENTS) -> list[Row]:
    """Every corpus row, in position order."""
    rows: list[Row] = []
    for path in sorted(directory.glob("*.v*.json")):
        rows.extend(json.loads(path.read_text(encoding="utf-8")))
    return sorted(rows, key=lambda r: int(r["position"]))


def covered(directory: Path = EVENTS) -> set[tuple[str, int]]:
    """The (event type, version) pairs the corpus has rows of."""
    return {(r["event_type"], int(r["event_version"])) for r in load_rows(directory)}


def row_values(row: Row, columns: Sequence[Column] = COLUMNS) -> tuple[Any, ...]:
    """``row`` as asyncpg returns it, in ``columns`` order; a column the row lacks is None."""
    return tuple(_value(column, row.get(column.name)) for column in columns)


def _value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.json:
        return orjson.dumps(value).decode()  # jsonb is selected as text
    if column.sql_type == "uuid":
        return uuid.UUID(value)
    if column.sql_type.startswith("timestamp"):
        return datetime.fromisoformat(value)
    if column.sql_type == "bytea":
        return base64.b64decode(value)
    return value


@dataclass(frozen=True)
class CorpusKey:
    """The corpus's data key: the user whose rows are sealed, and the key's secret."""

    user_id: str
    key: DataKey


def corpus_key(path: Path = KEY_FILE) -> CorpusKey:
    """The committed test data key."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return CorpusKey(data["user_id"], DataKey(data["user_id"], base64.b64decode(data["secret"])))
