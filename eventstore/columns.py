"""The envelope's columns, declared once: what both stores write, select and decode.

``COLUMNS`` is the field table of ``memsaga.events`` as the envelope sees it. The SELECT list,
the append arguments, the duplicate check and the row decoder are derived from it, so adding an
envelope field means: the models (:class:`~eventstore.envelope.NewEvent`,
:class:`~eventstore.envelope.RecordedEvent`, :class:`~eventstore.codec.PreparedEvent`), a line
here, a migration adding the column, and the append functions (``eventstore/functions``).
``tests/eventstore/test_columns.py`` holds the models, this table and the database together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from eventstore.envelope import RecordedEvent
from eventstore.registry import SchemaRegistry


@dataclass(frozen=True, slots=True)
class Column:
    """One envelope column of ``memsaga.events``.

    ``written`` columns come with each appended event (append-function parameters, in table
    order); the others the store assigns. A ``json`` column is ``jsonb``: written and selected
    as text, parsed once on read.
    """

    name: str
    sql_type: str
    written: bool
    json: bool = False

    @property
    def select(self) -> str:
        """The column's expression in a SELECT list."""
        return f"{self.name}::text AS {self.name}" if self.json else self.name

    @property
    def attr(self) -> str:
        """Its attribute on :class:`~eventstore.codec.PreparedEvent` (JSON ones are serialised once)."""
        return f"{self.name}_json" if self.json else self.name

    @property
    def param_type(self) -> str:
        """Its type as an append-function parameter (JSON travels as text)."""
        return "text" if self.json else self.sql_type


# SELECT order (rows are indexed by it: ``INDEX``, ``POSITION``); the written columns, in this
# order, are the append functions' parameters after the stream id and expected version.
COLUMNS: tuple[Column, ...] = (
    Column("event_id", "uuid", written=True),
    Column("stream_id", "text", written=False),
    Column("version", "bigint", written=False),
    Column("position", "bigint", written=False),
    Column("event_type", "text", written=True),
    Column("event_version", "integer", written=True),
    Column("correlation_id", "text", written=True),
    Column("causation_id", "text", written=True),
    Column("user_id", "text", written=True),
    Column("occurred_at", "timestamp with time zone", written=True),
    Column("recorded_at", "timestamp with time zone", written=False),
    Column("payload", "jsonb", written=True, json=True),
    Column("metadata", "jsonb", written=True, json=True),
)

WRITTEN: tuple[Column, ...] = tuple(c for c in COLUMNS if c.written)
SELECT_LIST = ", ".join(c.select for c in COLUMNS)
INDEX = {c.name: i for i, c in enumerate(COLUMNS)}
POSITION = INDEX["position"]

# What must match when the same event id is appended again: everything the producer wrote but
# the id itself and the metadata (a retry has a new trace span).
BODY_FIELDS: tuple[str, ...] = tuple(c.name for c in WRITTEN if c.name not in ("event_id", "metadata"))

Decoder = Callable[[Any, SchemaRegistry], RecordedEvent]


def load_json(text: str | bytes) -> Any:
    """Parse a JSON column (written by :func:`eventstore.codec.dump_json`, or ``jsonb`` output)."""
    return orjson.loads(text)


def _decoder_source() -> str:
    """Source of the row decoder: one dict display in :class:`RecordedEvent` field order.

    Generated rather than looping over the table at run time: replays decode millions of rows,
    and ``dict(zip(names, row))`` measured about 15 % slower than the literal (``timeit``).
    A :class:`RecordedEvent` field without a column fails here, at import.
    """
    i = INDEX
    upcast = f"registry.upcast(event_type, stored_version, load_json(row[{i['payload']}]))"
    computed = {  # the fields read into locals, or decided by the upcast
        "event_type": "event_type",
        "event_version": "version",
        "stored_version": "stored_version",
        "payload": "payload",
    }

    def value(name: str) -> str:
        if name in computed:
            return computed[name]
        column = COLUMNS[i[name]]
        return f"load_json(row[{i[name]}])" if column.json else f"row[{i[name]}]"

    items = ", ".join(f"{name!r}: {value(name)}" for name in RecordedEvent.model_fields)
    return (
        "def decode_row(row, registry):\n"
        f"    event_type, stored_version = row[{i['event_type']}], row[{i['event_version']}]\n"
        f"    version, payload = {upcast}\n"
        f"    return trusted({{{items}}})\n"
    )


def _compile_decoder() -> Decoder:
    namespace: dict[str, Any] = {"load_json": load_json, "trusted": RecordedEvent.trusted}
    exec(compile(_decoder_source(), "<eventstore.columns.decode_row>", "exec"), namespace)
    decoder: Decoder = namespace["decode_row"]
    return decoder


decode_row: Decoder = _compile_decoder()
"""The envelope of a row in ``COLUMNS`` order (extra trailing columns are ignored), upcast by
``registry``: the hot path of every read, and the conversion both stores share."""
