"""Schema migrations: versioned files, recorded, safe twice and from two processes at once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore import (
    EVENTSTORE_MIGRATIONS,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationSource,
    migrate,
)
from eventstore.migrate import applied_migrations

# The functions as a database has them: definition (header from the catalog, body as written)
# and settings, by signature.
_FUNCTIONS = """SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition,
        p.proconfig AS settings
    FROM pg_proc p WHERE p.pronamespace = 'memsaga'::regnamespace ORDER BY 1"""


async def test_migrate_twice_applies_once(fresh_database: Callable[[], Any]) -> None:
    dsn = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        first = await migrate(conn, [EVENTSTORE_MIGRATIONS])
        second = await migrate(conn, [EVENTSTORE_MIGRATIONS])
        assert [m.name for m in first] == [
            "0001_event_store.sql",
            "0002_append_plans.sql",
            "0003_append_single_event.sql",
            "0004_append_without_jit.sql",
            "0005_append_one_event.sql",
            "0006_data_keys.sql",
            "0007_sealed_payloads.sql",
            "functions/append_event.sql",
            "functions/append_events.sql",
            "functions/refuse_event_change.sql",
        ]
        assert second == []
        recorded = await applied_migrations(conn)
        assert [(r["source"], r["version"]) for r in recorded] == [("eventstore", v) for v in range(1, 8)]
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_file_once(
    fresh_database: Callable[[], Any],
) -> None:
    dsn = await fresh_database()
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c, [EVENTSTORE_MIGRATIONS]) for c in conns))
        files = len(EVENTSTORE_MIGRATIONS.migrations())
        functions = len(EVENTSTORE_MIGRATIONS.function_files())
        # One connection applied them all.
        assert sorted(len(r) for r in results) == [0, 0, 0, files + functions]
        assert await conns[0].fetchval("SELECT count(*) FROM memsaga.schema_migrations") == files
        assert await conns[0].fetchval("SELECT count(*) FROM memsaga.schema_functions") == functions
    finally:
        for c in conns:
            await c.close()


@pytest.fixture
def scratch_source(tmp_path: Path) -> Iterator[tuple[MigrationSource, Path]]:
    package = tmp_path / "scratch_migrations_pkg"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "migrations" / "0001_table.sql").write_text("CREATE TABLE memsaga.scratch (x int);")
    sys.path.insert(0, str(tmp_path))
    yield MigrationSource("scratch", "scratch_migrations_pkg"), package / "migrations"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("scratch_migrations_pkg", None)


async def test_an_edited_migration_is_refused(
    fresh_database: Callable[[], Any], scratch_source: tuple[MigrationSource, Path]
) -> None:
    source, folder = scratch_source
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn, [EVENTSTORE_MIGRATIONS, source])
        (folder / "0001_table.sql").write_text("CREATE TABLE memsaga.scratch (x bigint);")
        with pytest.raises(MigrationChecksumMismatch, match="add a new one"):
            await migrate(conn, [EVENTSTORE_MIGRATIONS, source])
        (folder / "0001_table.sql").write_text("CREATE TABLE memsaga.scratch (x int);")
        (folder / "0002_more.sql").write_text("ALTER TABLE memsaga.scratch ADD COLUMN y int;")
        assert [m.version for m in await migrate(conn, [EVENTSTORE_MIGRATIONS, source])] == [2]
    finally:
        await conn.close()


def test_misnamed_migration_files_are_refused(scratch_source: tuple[MigrationSource, Path]) -> None:
    source, folder = scratch_source
    (folder / "2_Bad Name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lower_snake\.sql"):
        source.migrations()


async def test_a_database_migrated_before_function_files_ends_with_the_same_functions(
    fresh_database: Callable[[], Any],
) -> None:
    # What a database that applied 0001-0005 before function files existed holds.
    numbered_only = MigrationSource("eventstore", "eventstore", functions=None)
    fresh = await asyncpg.connect(await fresh_database())
    upgraded = await asyncpg.connect(await fresh_database())
    try:
        await migrate(fresh, [EVENTSTORE_MIGRATIONS])
        await migrate(upgraded, [numbered_only])
        assert await upgraded.fetchval("SELECT count(*) FROM memsaga.schema_functions") == 0
        reapplied = await migrate(upgraded, [EVENTSTORE_MIGRATIONS])
        assert [f.name for f in reapplied] == [f.name for f in EVENTSTORE_MIGRATIONS.function_files()]
        functions = [dict(r) for r in await fresh.fetch(_FUNCTIONS)]
        names = {f["signature"].split("(")[0] for f in functions}
        assert names == {"memsaga.append_event", "memsaga.append_events", "memsaga.refuse_event_change"}
        assert [dict(r) for r in await upgraded.fetch(_FUNCTIONS)] == functions
    finally:
        await fresh.close()
        await upgraded.close()


async def test_a_changed_function_file_is_applied_again_after_the_migrations(
    fresh_database: Callable[[], Any], scratch_source: tuple[MigrationSource, Path]
) -> None:
    source, folder = scratch_source
    functions = folder.parent / "functions"
    functions.mkdir()
    # A SQL function's body is checked at creation: the table of migration 0001 must exist by then.
    count = "CREATE OR REPLACE FUNCTION memsaga.scratch_count() RETURNS bigint LANGUAGE sql AS $$ {} $$;"
    (functions / "scratch_count.sql").write_text(count.format("SELECT count(*) FROM memsaga.scratch"))
    conn = await asyncpg.connect(await fresh_database())
    try:
        first = await migrate(conn, [EVENTSTORE_MIGRATIONS, source])
        assert [m.name for m in first][-2:] == ["0001_table.sql", "functions/scratch_count.sql"]
        assert await migrate(conn, [EVENTSTORE_MIGRATIONS, source]) == []
        edited = count.format("SELECT count(*) + 40 FROM memsaga.scratch")
        (functions / "scratch_count.sql").write_text(edited)
        assert [m.name for m in await migrate(conn, [EVENTSTORE_MIGRATIONS, source])] == [
            "functions/scratch_count.sql"
        ]
        assert await conn.fetchval("SELECT memsaga.scratch_count()") == 40
        assert await migrate(conn, [EVENTSTORE_MIGRATIONS, source]) == []
    finally:
        await conn.close()


def test_misnamed_function_files_are_refused(scratch_source: tuple[MigrationSource, Path]) -> None:
    source, folder = scratch_source
    (folder.parent / "functions").mkdir()
    (folder.parent / "functions" / "Append Event.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"lower_snake\.sql"):
        source.function_files()
