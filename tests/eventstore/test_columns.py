"""The envelope's field table agrees with the models, the events table and the append functions."""

from __future__ import annotations

import re

import asyncpg
import orjson

from eventstore import NewEvent, RecordedEvent
from eventstore.codec import AS_STORED, PreparedEvent
from eventstore.columns import COLUMNS, WRITTEN, decode_row

# Store-internal columns the envelope does not carry.
INTERNAL = {"tx_id"}


def test_every_recorded_field_has_a_column_and_every_column_a_field() -> None:
    assert set(RecordedEvent.model_fields) == {c.name for c in COLUMNS} | {"stored_version"}


def test_new_and_prepared_events_carry_exactly_the_written_columns() -> None:
    # A derived column (the ciphertext) is made when the event is prepared, not given with it.
    assert set(NewEvent.model_fields) == {c.name for c in WRITTEN if not c.derived}
    assert PreparedEvent._fields == tuple(c.attr for c in WRITTEN)  # in order: the append arguments


def test_decode_row_takes_each_field_from_its_own_column() -> None:
    row = [orjson.dumps({"from": c.name}).decode() if c.json else f"<{c.name}>" for c in COLUMNS]
    event = decode_row([*row, "a trailing column"], AS_STORED)
    for column, value in zip(COLUMNS, row, strict=True):
        expected = orjson.loads(value) if column.json else value
        assert getattr(event, column.name) == expected, column.name
    assert event.stored_version == event.event_version == "<event_version>"
    assert list(event.__dict__) == list(RecordedEvent.model_fields)  # as a validated model orders them


async def test_the_events_table_has_every_column_with_its_type(pg_pool: asyncpg.Pool) -> None:
    rows = await pg_pool.fetch(
        """SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
        WHERE attrelid = 'memsaga.events'::regclass AND attnum > 0 AND NOT attisdropped"""
    )
    table = {r["attname"]: r["type"] for r in rows if r["attname"] not in INTERNAL}
    assert table == {c.name: c.sql_type for c in COLUMNS}


async def test_the_append_functions_take_and_insert_the_written_columns(pg_pool: asyncpg.Pool) -> None:
    rows = await pg_pool.fetch(
        """SELECT p.proname, p.prosrc,
            array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)
                  ORDER BY n) AS args
        FROM pg_proc p WHERE p.pronamespace = 'memsaga'::regnamespace
            AND p.proname IN ('append_event', 'append_events')"""
    )
    functions = {r["proname"]: r for r in rows}
    scalars = [c.param_type for c in WRITTEN]
    assert functions["append_event"]["args"] == ["text", "bigint", *scalars]
    assert functions["append_events"]["args"] == ["text", "bigint", *(f"{t}[]" for t in scalars)]
    inserted = {"stream_id", "version", *(c.name for c in WRITTEN)}
    for row in rows:
        lists = re.findall(r"INSERT INTO memsaga\.events \(([^)]*)\)", row["prosrc"])
        assert lists, row["proname"]
        for names in lists:
            assert {n.strip() for n in names.split(",")} == inserted, row["proname"]
