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
    as text, parsed once on read. A ``derived`` written column is made from the event when it is
    prepared (``sealed``: the payload's ciphertext), not copied from the producer's event.
    """

    name: str
    sql_type: str
    written: bool
    json: bool = False
    derived: bool = False

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
    Column("sealed", "bytea", written=True, derived=True),  # eventstore/encryption.py
)

WRITTEN: tuple[Column, ...] = tuple(c for c in COLUMNS if c.written)
SELECT_LIST = ", ".join(c.select for c in COLUMNS)
INDEX = {c.name: i for i, c in enumerate(COLUMNS)}
POSITION = INDEX["position"]
USER_ID = INDEX["user_id"]
EVENT_ID = INDEX["event_id"]
SEALED_COLUMN = INDEX["sealed"]

# What must match when the same event id is appended again: everything the producer wrote but
# the id itself and the metadata (a retry has a new trace span).
BODY_FIELDS: tuple[str, ...] = tuple(c.name for c in WRITTEN if c.name not in ("event_id", "metadata"))

Decoder = Callable[[Any, SchemaRegistry], RecordedEvent]


def load_json(text: str | bytes) -> Any:
    """Parse a JSON column (written by :func:`eventstore.codec.dump_json`, or ``jsonb`` output)."""
    return orjson.loads(text)


def _decoder_source(name: str, *, opened: bool) -> str:
    """Source of a row decoder: one dict display in :class:`RecordedEvent` field order.

    Generated rather than looping over the table at run time: replays decode millions of rows,
    and ``dict(zip(names, row))`` measured about 15 % slower than the literal (``timeit``).
    A :class:`RecordedEvent` field without a column fails here, at import.

    ``opened``: the decoder takes the payload's JSON as an argument (a sealed row's plain payload,
    just decrypted) and leaves ``sealed`` empty; otherwise the row's own columns are decoded.
    """
    i = INDEX
    if opened:
        upcast = "registry.upcast(event_type, stored_version, load_json(plain))"
    else:  # a sealed row's redacted payload is upcast once opened (an upcaster may read its values)
        upcast = (
            f"(stored_version, load_json(row[{i['payload']}])) if row[{i['sealed']}] is not None"
            f" else registry.upcast(event_type, stored_version, load_json(row[{i['payload']}]))"
        )
    computed = {  # the fields read into locals, or decided by the upcast
        "event_type": "event_type",
        "event_version": "version",
        "stored_version": "stored_version",
        "payload": "payload",
    }
    if opened:
        computed["sealed"] = "None"

    def value(field: str) -> str:
        if field in computed:
            return computed[field]
        column = COLUMNS[i[field]]
        return f"load_json(row[{i[field]}])" if column.json else f"row[{i[field]}]"

    items = ", ".join(f"{field!r}: {value(field)}" for field in RecordedEvent.model_fields)
    arguments = "row, registry, plain" if opened else "row, registry"
    return (
        f"def {name}({arguments}):\n"
        f"    event_type, stored_version = row[{i['event_type']}], row[{i['event_version']}]\n"
        f"    version, payload = {upcast}\n"
        f"    return trusted({{{items}}})\n"
    )


def _compile_decoder(name: str, *, opened: bool) -> Any:
    namespace: dict[str, Any] = {"load_json": load_json, "trusted": RecordedEvent.trusted}
    exec(compile(_decoder_source(name, opened=opened), f"<eventstore.columns.{name}>", "exec"), namespace)
    return namespace[name]


decode_row: Decoder = _compile_decoder("decode_row", opened=False)
"""The envelope of a row in ``COLUMNS`` order (extra trailing columns are ignored), upcast by
``registry``: the hot path of every read, and the conversion both stores share. A sealed row
comes out as stored: its payload redacted and not upcast (``event_version`` is its stored
version), its ciphertext in ``sealed``; :class:`~eventstore.vault.Vault` opens and upcasts it."""

OpenedDecoder = Callable[[Any, SchemaRegistry, bytes], RecordedEvent]

decode_opened_row: OpenedDecoder = _compile_decoder("decode_opened_row", opened=True)
"""Like :func:`decode_row` for a sealed row whose plain payload JSON (``plain``) was just
decrypted: the payload is parsed from it instead of the redacted column, ``sealed`` left None."""
