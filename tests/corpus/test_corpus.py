"""The event corpus replays through today's code: every stored event ever written decodes,
upcasts, opens and goes through every projection's handlers without an error."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import asyncpg

from eventstore import EventPayload, RecordedEvent, SchemaRegistry
from eventstore.columns import COLUMNS, Column, decode_row
from eventstore.encryption import ERASED, ERASED_FLAG, SEALED, SEALED_VALUES, DataKey
from eventstore.personal import personal_paths
from eventstore.vault import Vault
from memsaga.bootstrap import build_registry
from memsaga.devstack.databases import DatabaseFactory
from memsaga.schema import registered
from projections import PROJECTIONS, Projection
from projections.extensions import create_extensions
from projections.tracking import apply_batch
from sagas.forgetting import FORGET_EVENTS
from sagas.memory_extraction.events import COMPENSATING_EVENTS
from tests.corpus.corpus import EVENTS, corpus_file, corpus_key, covered, load_rows, row_values
from tests.corpus.generate import generate
from tests.support import migrated_database


class CorpusKeys:
    """The key ring of the corpus: the test key for its user, and ``forgotten`` users' keys destroyed."""

    def __init__(self, key: DataKey, forgotten: Iterable[str] = ()) -> None:
        self.key = key
        self.forgotten = set(forgotten)

    async def keys_for_read(self, user_ids: Iterable[str]) -> dict[str, DataKey | None]:
        return {u: None if u in self.forgotten else self.key for u in user_ids if u == self.key.user_id}


def decoded(registry: SchemaRegistry) -> list[RecordedEvent]:
    """Every corpus row as the store reads it: decoded and upcast to the latest version."""
    return [decode_row(row_values(row), registry) for row in load_rows()]


async def opened(events: list[RecordedEvent], *, forgotten: Iterable[str] = ()) -> list[RecordedEvent]:
    registry = build_registry()
    return await Vault(registry, CorpusKeys(corpus_key().key, forgotten)).open_events(events)  # type: ignore[arg-type]


def test_every_registered_version_has_a_corpus_entry() -> None:
    missing = sorted(set(registered(build_registry())) - covered())
    assert not missing, (
        f"no corpus entry for {missing}: run `.venv/bin/python -m tests.corpus.generate`"
        " and commit what it writes (docs/evolution.md, The event corpus)"
    )


def test_the_corpus_holds_compensations_forgetting_and_sealed_events() -> None:
    rows = load_rows()
    types = {r["event_type"] for r in rows}
    assert COMPENSATING_EVENTS | {m.event_type for m in FORGET_EVENTS} <= types
    sealed = {(r["event_type"], r["event_version"]) for r in rows if r["metadata"].get(SEALED)}
    personal = {key for key, model in registered(build_registry()).items() if personal_paths(model)}
    assert personal <= sealed  # every version with personal fields, also as the store seals it
    in_column = {(r["event_type"], r["event_version"]) for r in rows if r.get("sealed")}
    assert personal <= in_column  # ... as it seals today (the ``sealed`` column, migration 0007)


async def test_every_corpus_event_decodes_upcasts_and_opens() -> None:
    registry = build_registry()
    events = await opened(decoded(registry))

    for event in events:
        assert event.event_version == registry.latest_version(event.event_type), event.event_id
        model = registry.model_for(event.event_type, event.event_version)
        assert model is not None
        model.model_validate(event.payload)  # what a projection handler does (payload_of)
        assert SEALED_VALUES not in event.payload
    upcast = [e for e in events if e.stored_version != e.event_version]
    assert {e.event_type for e in upcast} == {"MemoryCreated", "MemoryRetracted"}
    sealed = next(e for e in events if e.metadata.get(SEALED) and e.event_type == "MemoryRetracted")
    assert sealed.stored_version == 1 and sealed.payload["reason"] == "reason-1"
    # The store's own reads (rows decoded and opened in one step) read the same events.
    vault = Vault(registry, CorpusKeys(corpus_key().key, ()))  # type: ignore[arg-type]
    assert await vault.decode_rows([row_values(r) for r in load_rows()]) == events


async def test_a_forgotten_users_corpus_events_read_as_erased() -> None:
    events = await opened(decoded(build_registry()), forgotten=[corpus_key().user_id])

    sealed = [e for e in events if e.metadata.get(SEALED)]
    assert sealed and all(e.metadata[ERASED_FLAG] for e in sealed)
    assert {e.payload["reason"] for e in sealed if e.event_type == "MemoryRetracted"} == {ERASED}


def test_a_column_a_row_lacks_reads_as_null() -> None:
    row = load_rows()[0]
    later = (*COLUMNS, Column("sealed", "bytea", written=True))  # a column added after the row was stored

    values = row_values({k: v for k, v in row.items() if k != "user_id"}, later)

    assert values[-1] is None and values[[c.name for c in later].index("user_id")] is None
    assert decode_row(values, build_registry()).user_id is None


def test_the_generator_adds_new_versions_only_and_never_edits(tmp_path: Path) -> None:
    shutil.copytree(EVENTS, tmp_path / "events")
    before = {p.name: p.read_bytes() for p in (tmp_path / "events").iterdir()}

    class NoteV9(EventPayload):
        event_type = "CorpusNote"
        event_version = 9
        text: str

    registry = build_registry()
    registry.register(NoteV9)
    written = generate(registry, tmp_path / "events")

    assert written == [corpus_file(tmp_path / "events", "CorpusNote", 9)]
    assert {p.name: p.read_bytes() for p in (tmp_path / "events").iterdir() if p.name in before} == before
    assert generate(registry, tmp_path / "events") == []
    new = load_rows(tmp_path / "events")[-1]
    assert new["position"] == max(int(r["position"]) for r in load_rows()) + 1


async def test_the_whole_corpus_replays_through_every_projection(
    fresh_pgvector_database: DatabaseFactory,
) -> None:
    events = await opened(decoded(build_registry()))
    conn = await asyncpg.connect(await migrated_database(fresh_pgvector_database))
    try:
        for projection in PROJECTIONS.values():
            errors = await _replay(conn, projection, events)
            assert errors == [], f"{projection.name}: " + "\n".join(errors)
    finally:
        await conn.close()


async def _replay(conn: asyncpg.Connection, projection: Projection, events: list[RecordedEvent]) -> list[str]:
    """Apply ``events`` event by event (each type's handler), then as one batch (the batch
    handlers) on a second set of tables; the errors, named by event."""
    await create_extensions(conn, projection)
    for version in (1, 2):
        await conn.execute(projection.ddl_at(version))
    errors = []
    tables = projection.tables_at(1)
    for event in events:
        handler = projection.handlers.get(event.event_type)
        if handler is None:
            continue
        try:
            async with conn.transaction():
                await handler(conn, tables, event)
        except Exception as exc:
            errors.append(f"{event.event_type} v{event.stored_version} ({event.event_id}): {exc!r}")
    async with conn.transaction():
        results = await apply_batch(conn, projection, 2, projection.tables_at(2), events)
    handled = [e for e in events if e.event_type in projection.handlers]
    errors += [
        f"batch: {e.event_type} v{e.stored_version} ({e.event_id}): {r.error or 'not applied'}"
        for e, r in zip(events, results, strict=True)
        if r.error or (e in handled and not r.applied)
    ]
    return errors
