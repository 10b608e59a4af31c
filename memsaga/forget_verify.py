"""``memsaga forget --verify``: look for a string the user said everywhere memsaga keeps data.

Counts, per place, where ``canary`` still occurs in plain text: the user's events (payloads and
metadata), every other table of memsaga's schemas (read models, parked events, checkpoints…;
the user's rows where a table has a user column), the blob store, the user's messages stored in
the JetStream stream (bodies and headers), the Temporal histories of the user's workflows
(payload bytes as stored), and log files (every line: no log may carry what a user said). After forgetting,
every count must be 0 (docs/privacy.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import nats.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel
from temporalio.client import Client

from activities.forgetting import visibility_literal
from memsaga.errors import MemsagaError
from projections.base import quote_ident
from sagas.forgetting import forget_workflow_id

SCHEMAS = ("memsaga", "memsaga_read")
_OWN_SEARCHES = ("events", "blobs")  # searched with their own statements


class PlaceCount(BaseModel):
    """Where the canary was looked for, and how often it was found."""

    place: str
    count: int
    looked_at: int
    """How many rows, blobs, messages, histories or files were searched."""


class Verification(BaseModel):
    """The result of one verification (``memsaga forget --verify --json`` prints it)."""

    user_id: str
    clean: bool
    places: list[PlaceCount]


async def count_in_tables(pool: asyncpg.Pool, user_id: str, canary: str) -> list[PlaceCount]:
    """The user's events, then every other table of :data:`SCHEMAS` (rows as text): the user's
    rows where the table has a ``user_id`` column (another user may have said the same), all
    rows otherwise."""
    events = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE strpos(payload::text, $1) > 0 OR strpos(metadata::text, $1) > 0),"
        " count(*) FROM memsaga.events WHERE user_id = $2",
        canary,
        user_id,
    )
    assert events is not None
    found = [PlaceCount(place="event store (memsaga.events)", count=events[0], looked_at=events[1])]
    tables = await pool.fetch(
        "SELECT t.table_schema, t.table_name, EXISTS (SELECT 1 FROM information_schema.columns c"
        "   WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name"
        "   AND c.column_name = 'user_id')"
        " AS by_user"
        " FROM information_schema.tables t"
        " WHERE t.table_schema = ANY($1::text[]) AND t.table_type = 'BASE TABLE' ORDER BY 1, 2",
        list(SCHEMAS),
    )
    for row in tables:
        schema, name = row["table_schema"], row["table_name"]
        if schema == "memsaga" and name in _OWN_SEARCHES:
            continue
        qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
        where = "WHERE user_id = $2" if row["by_user"] else "WHERE $2::text IS NOT NULL"
        counted = await pool.fetchrow(
            f"SELECT count(*) FILTER (WHERE strpos(t::text, $1) > 0), count(*) FROM {qualified} t {where}",
            canary,
            user_id,
        )
        assert counted is not None
        found.append(PlaceCount(place=f"table {schema}.{name}", count=counted[0], looked_at=counted[1]))
    return found


async def count_in_blobs(pool: asyncpg.Pool, canary: str) -> PlaceCount:
    """Blobs whose stored bytes hold the canary's UTF-8."""
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE position($1::bytea IN content) > 0), count(*) FROM memsaga.blobs",
        canary.encode(),
    )
    assert row is not None
    return PlaceCount(place="blob store (memsaga.blobs)", count=row[0], looked_at=row[1])


class StreamReadIncomplete(MemsagaError):
    """The stream did not hand over all its stored messages, so a count would be a guess."""


FETCH_TIMEOUT = 5.0
"""Seconds one fetch of stored messages may take (a busy server answers slowly)."""
FETCH_ATTEMPTS = 3
"""Fetches in a row that may come back empty before the read counts as incomplete."""


async def count_in_stream(js: JetStreamContext, stream: str, user_id: str, canary: str) -> PlaceCount:
    """The user's messages stored in ``stream`` (by the envelope's ``user_id``; a body that is not
    an envelope counts as the user's) whose body or headers hold the canary.

    Every stored message is read (at least as many as the stream held when the count began).

    :raises StreamReadIncomplete: the stream stopped handing messages over before that.
    """
    needle = canary.encode()
    info = await js.stream_info(stream)
    total = info.state.messages
    subjects = info.config.subjects or [">"]
    sub = await js.pull_subscribe(
        subjects[0] if len(subjects) == 1 else ">",
        durable=None,
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=60.0
        ),
    )
    read = seen = count = 0
    empty = 0
    try:
        while read < total:
            try:
                batch = await sub.fetch(batch=500, timeout=FETCH_TIMEOUT)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                empty += 1
                if empty >= FETCH_ATTEMPTS:
                    raise StreamReadIncomplete(
                        f"JetStream stream {stream} handed over {read} of its {total} messages, then"
                        f" nothing for {FETCH_ATTEMPTS * FETCH_TIMEOUT:.0f}s: its count would be"
                        " incomplete; run the check again (`memsaga stats` shows the stream)"
                    ) from None
                continue
            empty = 0
            read += len(batch)
            for msg in batch:
                if _user_of(msg.data) not in (user_id, None):
                    continue
                seen += 1
                headers = "".join(f"{k}{v}" for k, v in (msg.headers or {}).items()).encode()
                if needle in msg.data or needle in headers:
                    count += 1
    finally:
        await sub.unsubscribe()
    return PlaceCount(place=f"JetStream stream {stream}", count=count, looked_at=seen)


def _user_of(body: bytes) -> str | None:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    user = envelope.get("user_id") if isinstance(envelope, dict) else None
    return user if isinstance(user, str) else None


async def count_in_histories(client: Client, user_id: str, canary: str) -> PlaceCount:
    """The user's workflows (by the ``UserId`` search attribute, and the forget saga): events
    whose stored bytes (payloads as Temporal keeps them) hold the canary."""
    needle = canary.encode()
    ids = {w.id async for w in client.list_workflows(f"UserId = {visibility_literal(user_id)}")}
    ids.add(forget_workflow_id(user_id))
    count = looked = 0
    for workflow_id in sorted(ids):
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except Exception:  # never ran (the forget saga of a user never forgotten)
            continue
        looked += 1
        count += sum(needle in event.SerializeToString() for event in history.events)
    return PlaceCount(place="Temporal histories of the user's workflows", count=count, looked_at=looked)


def count_in_files(paths: Iterable[Path], canary: str) -> PlaceCount:
    """Lines of the given log files that hold the canary."""
    needle = canary.encode()
    count = looked = 0
    for path in paths:
        try:
            with path.open("rb") as lines:
                looked += 1
                count += sum(needle in line for line in lines)
        except OSError:
            continue
    return PlaceCount(place="service logs", count=count, looked_at=looked)


def log_files(state_dir: Path, extra: Iterable[Path] = ()) -> list[Path]:
    """The local stack's log files (``*.log`` under its state directory) and ``extra``."""
    found = sorted(state_dir.rglob("*.log")) if state_dir.exists() else []
    return [*found, *extra]


async def verify_forgotten(
    *,
    pool: asyncpg.Pool,
    js: JetStreamContext | None,
    stream: str,
    temporal: Client | None,
    user_id: str,
    canary: str,
    logs: Iterable[Path],
) -> Verification:
    """Count ``canary`` in every place; ``clean`` when every count is 0 (places that could not
    be reached are left out only when their client is None)."""
    places = await count_in_tables(pool, user_id, canary)
    places.append(await count_in_blobs(pool, canary))
    if js is not None:
        places.append(await count_in_stream(js, stream, user_id, canary))
    if temporal is not None:
        places.append(await count_in_histories(temporal, user_id, canary))
    places.append(await asyncio.to_thread(count_in_files, list(logs), canary))
    return Verification(user_id=user_id, clean=all(p.count == 0 for p in places), places=places)
