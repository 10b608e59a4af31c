"""Isolation between users in the read models: forced row-level security, and the read role.

The meta-test lists every table with a user column in the schemas memsaga uses, after every
projection has built its read model (and a second version of one), and fails on one that is not
protected. The others read as ``memsaga_reader`` without a ``WHERE`` and see one user only.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from click.testing import Result
from typer.testing import CliRunner

from eventstore import MigrationError, NewEvent, PostgresEventStore, migrate
from memsaga.bootstrap import MIGRATION_SOURCES, build_registry
from memsaga.cli import app
from memsaga.devstack import DatabaseFactory
from memsaga.read_connection import read_pool
from memsaga.settings import Settings
from projections import EXTRACTIONS, MEMORIES, MEMORY_SEARCH, PROJECTIONS, list_extractions, rebuild
from projections.memories import query_memories
from projections.row_security import READER_ROLE, ReaderRoleUnavailable, as_user
from sagas.memory_extraction import events as ev
from tests.support import migrated_database

SCHEMAS = ("memsaga", "memsaga_read")
EXEMPT = {
    "memsaga.events": "the event store, not a read model: the read role holds no privilege on it",
    "memsaga.data_keys": "wrapped data keys (eventstore/keys.py): the read role holds no privilege on it",
    "memsaga.saga_owners": "whose saga is which (payload codec): the read role holds no privilege on it",
}
"""Tables with a user column that need no policy, and why; the read role must not be able to read them."""

AT = datetime(2026, 5, 1, tzinfo=UTC)


@dataclass
class World:
    dsn: str
    pool: asyncpg.Pool
    store: PostgresEventStore
    users: tuple[str, str]


async def remember(store: PostgresEventStore, user: str, text: str) -> str:
    memory_id = f"mem-{uuid.uuid4().hex[:12]}"
    workflow_id = f"extract-{uuid.uuid4().hex[:8]}"
    payload = ev.MemoryCreated(
        memory_id=memory_id, user_id=user, episode_id=uuid.uuid4().hex, text=text, kind="preference",
        content_hash=uuid.uuid4().hex, vector_sha256=None, dimension=None, embedder=None, source="chat",
    )  # fmt: skip
    requested = ev.ExtractionRequested(
        workflow_id=workflow_id, episode_id=payload.episode_id, source="chat", review_requested=False,
        extractor="rules", embedder="hashing",
    )  # fmt: skip
    for stream, p in (
        (ev.memory_stream(memory_id), payload),
        (ev.episode_stream(payload.episode_id), requested),
    ):
        event = NewEvent.of(
            p, correlation_id=workflow_id, causation_id=workflow_id, occurred_at=AT, user_id=user
        )
        await store.append(stream, [event])
    return memory_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(fresh_pgvector_database: DatabaseFactory) -> AsyncIterator[World]:
    """Two users' memories in every read model; ``memories`` rebuilt once (a second version)."""
    dsn = await migrated_database(fresh_pgvector_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    store = PostgresEventStore(pool, build_registry())
    users = (f"ana-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}")
    for user in users:
        for n in range(2):
            await remember(store, user, f"{user} likes tea number {n}")
    for projection in PROJECTIONS.values():
        await rebuild(pool, store, projection)
    await rebuild(pool, store, MEMORIES)  # the blue-green switch makes new tables and views
    try:
        yield World(dsn, pool, store, users)
    finally:
        await pool.close()


async def test_every_table_with_a_user_column_has_forced_row_level_security(world: World) -> None:
    rows = await world.pool.fetch(
        """SELECT n.nspname || '.' || c.relname AS name, c.relrowsecurity, c.relforcerowsecurity,
                  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
                  has_table_privilege($2, c.oid, 'SELECT, INSERT, UPDATE, DELETE') AS readable
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
           WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p')""",
        list(SCHEMAS),
        READER_ROLE,
    )
    names = {r["name"] for r in rows}
    versions = {n for n in names if n.startswith("memsaga_read.memories_v")}
    assert len(versions) == 2, names  # both versions of `memories` were listed
    assert {f"memsaga_read.{t}_v1" for t in MEMORY_SEARCH.tables if t != "memory_words"} <= names
    unprotected = [
        r["name"]
        for r in rows
        if r["name"] not in EXEMPT
        and not (r["relrowsecurity"] and r["relforcerowsecurity"] and r["policies"] >= 2)
    ]
    assert unprotected == [], f"tables with a user column and no forced row-level security: {unprotected}"
    readable_exempt = [r["name"] for r in rows if r["name"] in EXEMPT and r["readable"]]
    assert readable_exempt == []
    assert set(EXEMPT) <= names  # an exemption that no longer applies is removed


async def test_every_read_model_table_is_forced_and_the_views_run_as_their_reader(world: World) -> None:
    loose = await world.pool.fetch(
        """SELECT relname FROM pg_class WHERE relnamespace = 'memsaga_read'::regnamespace
           AND relkind = 'r' AND NOT (relrowsecurity AND relforcerowsecurity)"""
    )
    assert [r["relname"] for r in loose] == []
    definer_views = await world.pool.fetch(
        """SELECT relname FROM pg_class WHERE relnamespace = 'memsaga_read'::regnamespace AND relkind = 'v'
           AND NOT coalesce('security_invoker=true' = ANY(reloptions), false)"""
    )
    assert [r["relname"] for r in definer_views] == []
    # Tables without a user column cannot be filtered by user: the read role may not read them.
    timeline = EXTRACTIONS.views()["extraction_timeline"]
    assert not await world.pool.fetchval(
        "SELECT has_table_privilege($1, $2, 'SELECT')", READER_ROLE, timeline
    )


@pytest.mark.parametrize(
    "view", ["memories", "memory_lifecycle", "memory_search", "memory_words", "extractions"]
)
async def test_a_query_without_where_sees_only_the_transactions_user(world: World, view: str) -> None:
    ana, bob = world.users
    everyone = await world.pool.fetch(f"SELECT DISTINCT user_id FROM memsaga_read.{view}")
    assert {ana, bob} <= {r["user_id"] for r in everyone}  # the owner sees every user
    for user in (ana, bob):
        async with as_user(world.pool, user) as conn:
            seen = await conn.fetch(f"SELECT DISTINCT user_id FROM memsaga_read.{view}")
            assert await conn.fetchval("SELECT current_user") == READER_ROLE
        assert [r["user_id"] for r in seen] == [user]
    for nobody in (None, ""):
        async with as_user(world.pool, nobody) as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM memsaga_read.{view}") == 0
    async with world.pool.acquire() as conn:  # the role and the user ended with the transaction
        assert await conn.fetchval("SELECT current_user") != READER_ROLE


async def test_the_read_role_sees_nothing_of_the_physical_tables_of_others(world: World) -> None:
    ana, _ = world.users
    active = await world.pool.fetchval(
        "SELECT active_version FROM memsaga.projections WHERE name = 'memories'"
    )
    table = MEMORIES.tables_at(active)["memories"]
    async with as_user(world.pool, ana) as conn:
        users = {r["user_id"] for r in await conn.fetch(f"SELECT user_id FROM {table}")}
    assert users == {ana}


async def test_the_read_role_cannot_write_nor_read_the_event_store(world: World) -> None:
    ana, _ = world.users
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(world.pool, ana) as conn:
            await conn.fetchval("SELECT count(*) FROM memsaga.events")
    with pytest.raises(asyncpg.PostgresError):  # read-only transaction, and no write privilege
        async with as_user(world.pool, ana) as conn:
            await conn.execute("DELETE FROM memsaga_read.memories")


async def test_query_functions_read_as_the_user(world: World) -> None:
    ana, bob = world.users
    mine = await query_memories(world.pool, ana)
    assert len(mine) == 2 and {m.user_id for m in mine} == {ana}
    theirs = await list_extractions(world.pool, user_id=bob)
    assert theirs and {e.user_id for e in theirs} == {bob}
    every = await list_extractions(world.pool)  # the operator's view: every user's
    assert {ana, bob} <= {e.user_id for e in every}
    assert await query_memories(world.pool, "nobody") == []
    assert await query_memories(world.pool, f"{ana[:3]}%") == []  # no pattern matching on user ids


async def memories_cli(dsn: str, read_dsn: str, user: str, state: Path) -> Result:
    """``memsaga memories --user USER --json`` with ``MEMSAGA_READ_DATABASE_URL=read_dsn``."""
    env = {"MEMSAGA_DATABASE_URL": dsn, "MEMSAGA_READ_DATABASE_URL": read_dsn}
    env["MEMSAGA_STATE_DIR"] = str(state)
    args = ["memories", "--user", user, "--json"]
    return await asyncio.to_thread(CliRunner().invoke, app, args, env=env)


async def test_a_login_of_its_own_in_the_read_role(world: World, tmp_path: Path) -> None:
    """MEMSAGA_READ_DATABASE_URL's kind of login: member of memsaga_reader, nothing else."""
    login = f"reader_{uuid.uuid4().hex[:8]}"
    await world.pool.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {READER_ROLE}')
    outsider = f"outsider_{uuid.uuid4().hex[:8]}"
    await world.pool.execute(f'CREATE ROLE "{outsider}" LOGIN')
    dsn = world.dsn.replace("postgres@", f"{login}@", 1)
    assert dsn != world.dsn, "the test DSN names the postgres user"
    ana, bob = world.users
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        assert {m.user_id for m in await query_memories(pool, bob)} == {bob}
        # Outside a user's transaction the login has the read role's rights and sees no row.
        assert await pool.fetchval("SELECT count(*) FROM memsaga_read.memories") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.fetchval("SELECT count(*) FROM memsaga.events")
    finally:
        await pool.close()
    outside = await asyncpg.create_pool(
        world.dsn.replace("postgres@", f"{outsider}@", 1), min_size=1, max_size=1
    )
    try:
        with pytest.raises(ReaderRoleUnavailable):
            await query_memories(outside, ana)
    finally:
        await outside.close()
    settings = Settings(database_url=world.dsn, read_database_url=dsn)
    async with read_pool(settings, world.pool) as reading:
        assert reading is not world.pool and await reading.fetchval("SELECT current_user") == login
    async with read_pool(Settings(database_url=world.dsn), world.pool) as reading:
        assert reading is world.pool
    shown = await memories_cli(world.dsn, dsn, bob, tmp_path)
    assert shown.exit_code == 0 and {m["user_id"] for m in json.loads(shown.stdout)} == {bob}
    refused = await memories_cli(world.dsn, world.dsn.replace("postgres@", f"{outsider}@", 1), bob, tmp_path)
    assert refused.exit_code == 3 and "memsaga_reader" in refused.stdout + refused.stderr
    for role in (login, outsider):  # roles outlive databases: leave the cluster as it was
        await world.pool.execute(f'DROP ROLE "{role}"')


async def test_the_projector_writes_under_forced_security_as_a_plain_owner(
    fresh_database: DatabaseFactory,
) -> None:
    """An owner that is no superuser (which would bypass every policy) builds and reads its read model."""
    admin_dsn = await fresh_database()
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    database = admin_dsn.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{owner}" LOGIN')
        await admin.execute(f'ALTER DATABASE "{database}" OWNER TO "{owner}"')
        await admin.execute(f'GRANT {READER_ROLE} TO "{owner}"')  # a DBA's part (docs/privacy.md)
    finally:
        await admin.close()
    dsn = admin_dsn.replace("postgres@", f"{owner}@", 1)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, MIGRATION_SOURCES)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        store = PostgresEventStore(pool, build_registry())
        await remember(store, "ana", "tea")
        await remember(store, "bob", "coffee")
        await rebuild(pool, store, MEMORIES)
        assert await pool.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        assert await pool.fetchval("SELECT count(*) FROM memsaga_read.memories") == 2  # the owner: every row
        assert [m.text for m in await query_memories(pool, "bob")] == ["coffee"]
    finally:
        await pool.close()
    await fresh_database.drop(admin_dsn)
    admin = await asyncpg.connect(fresh_database.admin_url)
    try:
        await admin.execute(f'DROP ROLE "{owner}"')
    finally:
        await admin.close()


async def test_a_schema_without_the_migration_is_a_clear_error(fresh_database: DatabaseFactory) -> None:
    dsn = await migrated_database(fresh_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await pool.execute("DROP FUNCTION memsaga.protect_read_model(regclass)")
        store = PostgresEventStore(pool, build_registry())
        with pytest.raises(MigrationError, match="run `memsaga migrate`"):
            await rebuild(pool, store, MEMORIES)
    finally:
        await pool.close()


async def test_read_models_made_before_the_migration_are_protected_by_it(world: World) -> None:
    """What migration 0004 does to tables and views it finds: the same as a new version gets."""
    table = EXTRACTIONS.tables_at(1)["extractions"]
    view = EXTRACTIONS.views()["extractions"]
    async with world.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"DROP POLICY memsaga_reader_one_user ON {table}")
        await conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY")
        await conn.execute(f"ALTER VIEW {view} RESET (security_invoker)")
        await conn.execute(
            """SELECT memsaga.protect_read_model(c.oid) FROM pg_class c
               WHERE c.relnamespace = 'memsaga_read'::regnamespace AND c.relkind IN ('r', 'p')"""
        )
        await conn.execute(
            """SELECT memsaga.expose_read_model_view(c.oid) FROM pg_class c
               WHERE c.relnamespace = 'memsaga_read'::regnamespace AND c.relkind = 'v'"""
        )
    ana, _ = world.users
    async with as_user(world.pool, ana) as conn:
        assert {r["user_id"] for r in await conn.fetch(f"SELECT user_id FROM {view}")} == {ana}
