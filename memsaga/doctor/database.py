"""The checks ``memsaga doctor`` runs on PostgreSQL: reachable, durable, the schema, the blob
store, pgvector, the relay's lag and the commit-order gap, and each projection."""

from __future__ import annotations

import asyncpg

from eventstore import PostgresEventStore
from memsaga.doctor.durability import read_settings
from memsaga.doctor.model import Check, age, ok, problem, warn
from projections import PROJECTIONS, Projection
from projections.status import ConsumerStatus, Lag, ProjectionStatus, projection_status, relay_status

LAG_WARN_SECONDS = 30.0
"""A reader whose oldest unread event waited this long is worth a look…"""
LAG_PROBLEM_SECONDS = 300.0
"""…and this long, stuck."""
GAP_WARN_SECONDS = 5.0
"""An append open this long holds the relay (and every projection) at its position…"""
GAP_PROBLEM_SECONDS = 60.0
"""…and this long is stuck."""

_DURABILITY_WHY = {
    "fsync": "a crash (of the server or the machine) can corrupt the database",
    "synchronous_commit": "a crash loses the last commits: events memsaga and Temporal took as stored",
    "full_page_writes": "a crash can leave torn pages that recovery cannot repair",
}

# Transactions that inserted into memsaga.events and are still open: each holds a position the
# gap-safe tail cannot pass until it ends (eventstore/tail.py), so the relay waits behind it.
_GAP_HOLDERS = """
SELECT a.pid, a.application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS seconds
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = 'memsaga.events'::regclass
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
ORDER BY a.xact_start NULLS LAST
"""


async def durability_checks(pool: asyncpg.Pool) -> list[Check]:
    """``fsync``, ``synchronous_commit``, ``full_page_writes``: off is a problem."""
    checks = []
    for s in await read_settings(pool):
        name = f"postgres.{s.name}"
        seen = f"{s.value} (from {s.source})"
        if s.unsafe:
            checks.append(problem(name, f"{seen}: {_DURABILITY_WHY[s.name]}", s.fix()))
        else:
            checks.append(ok(name, seen))
    return checks


async def schema_check(pool: asyncpg.Pool) -> Check:
    """Whether ``memsaga migrate`` has run (the other database checks need it)."""
    missing = [
        t
        for t in ("memsaga.events", "memsaga.relay_checkpoints", "memsaga.projections")
        if await pool.fetchval("SELECT to_regclass($1)", t) is None
    ]
    if missing:
        return problem("postgres.schema", f"missing {', '.join(missing)}", "run `memsaga migrate`")
    return ok("postgres.schema", "memsaga's tables are there")


async def blob_store_check(pool: asyncpg.Pool) -> Check:
    """The blob store (``memsaga.blobs``, in the event store's database) answers a read."""
    try:
        await pool.fetchval("SELECT 1 FROM memsaga.blobs LIMIT 1")
    except asyncpg.PostgresError as exc:
        return problem("blobs", f"memsaga.blobs cannot be read: {exc}", "run `memsaga migrate`")
    return ok("blobs", "memsaga.blobs readable (in the event store's database)")


async def search_check(pool: asyncpg.Pool) -> Check:
    """pgvector, which the ``memory_search`` read model (recall) needs."""
    installed = await pool.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if installed is not None:
        return ok("search.pgvector", f"vector {installed} installed")
    available = await pool.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    )
    if available is not None:
        return ok("search.pgvector", f"vector {available} available (memory_search creates it)")
    return warn(
        "search.pgvector",
        "the server has no pgvector: memory_search (memsaga search) cannot run here",
        "install pgvector on the server (the local stack's PostgreSQL has it), or run without search",
    )


def _lag_check(name: str, lag: Lag, what: str, hint: str) -> Check:
    detail = f"{what}: {lag.events:,} events behind" + (
        f", the oldest waiting {age(lag.seconds)}" if lag.events else ""
    )
    if lag.events and lag.seconds >= LAG_PROBLEM_SECONDS:
        return problem(name, detail, hint)
    if lag.events and lag.seconds >= LAG_WARN_SECONDS:
        return warn(name, detail, hint)
    return ok(name, detail)


async def relay_check(pool: asyncpg.Pool, store: PostgresEventStore, stream: str) -> Check:
    """The relay's checkpoint against the store's head (the relay lag)."""
    status = await relay_status(pool, store, stream)
    where = f"position {status.position:,} of {status.head:,}"
    if status.updated_at is None:
        where += ", never ran"
    hint = "is `memsaga relay` running? Its log says what it waits for; `memsaga stats` shows the stream"
    return _lag_check("relay.lag", status.lag, where, hint)


async def gap_check(pool: asyncpg.Pool) -> Check:
    """Appends still open: the relay cannot pass their positions (the commit-order gap)."""
    rows = await pool.fetch(_GAP_HOLDERS)
    if not rows:
        return ok("relay.gap", "no append in flight: nothing holds the relay at a commit-order gap")
    oldest = rows[0]
    seconds = float(oldest["seconds"] or 0.0)
    who = f"pid {oldest['pid']} ({oldest['application_name'] or 'no application name'}, {oldest['state']})"
    detail = (
        f"{len(rows)} append(s) in flight; the oldest, {who}, open for {age(seconds)}: the relay, and"
        " every projection behind it, waits at its position until it ends"
    )
    hint = (
        f"an append takes milliseconds: find pid {oldest['pid']} in pg_stat_activity; if it is stuck,"
        f" SELECT pg_terminate_backend({oldest['pid']})"
    )
    if seconds >= GAP_PROBLEM_SECONDS:
        return problem("relay.gap", detail, hint)
    if seconds >= GAP_WARN_SECONDS:
        return warn("relay.gap", detail, hint)
    return ok("relay.gap", f"{len(rows)} append(s) in flight, the oldest open for {age(seconds)}")


async def projection_check(
    pool: asyncpg.Pool, store: PostgresEventStore, projection: Projection, consumer: ConsumerStatus | None
) -> Check:
    """One projection: built, same code, lag, parked events, and its consumer when NATS answers."""
    status = await projection_status(pool, store, projection)
    name = f"projection.{projection.name}"
    if status.needs_rebuild:
        return problem(
            name,
            f"active v{status.active_version} was built by code version {status.active_code_version},"
            f" this is {status.code_version}",
            (
                f"run `memsaga project run {projection.name}` with this code: it builds"
                f" v{status.code_version} beside the live version and switches when it has caught up"
                if status.code_version > (status.active_code_version or 0)
                else "this install is older than the code that built the read model: upgrade it"
            ),
        )
    if status.parked:
        return problem(
            name,
            f"{status.parked} parked event(s): the read model lacks them; {_where(status, consumer)}",
            f"`memsaga dlq list --projection {projection.name}`; fix the handler, then `memsaga dlq retry`",
        )
    return _lag_check(
        name, status.lag, _where(status, consumer), f"is `memsaga project {projection.name}` running?"
    )


def _where(status: ProjectionStatus, consumer: ConsumerStatus | None) -> str:
    text = (
        "not built yet"
        if status.active_version is None
        else f"v{status.active_version} at {status.position:,}"
    )
    if consumer is not None:
        text += (
            f", consumer {consumer.pending:,} pending, {consumer.ack_pending:,} unacknowledged,"
            f" {consumer.redelivered:,} redelivered"
        )
    return text


def projections_to_check() -> list[Projection]:
    """Every projection memsaga ships."""
    return list(PROJECTIONS.values())
