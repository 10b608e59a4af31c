"""``memsaga doctor``: every check, in order, each service reached once and closed after.

A service that does not answer is one ``unreachable`` check; the checks that need it are left
out (the report says so in that check's detail), the others still run.
"""

from __future__ import annotations

import contextlib

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS

from eventstore.pool import create_pool
from memsaga.bootstrap import build_stores, redact
from memsaga.devstack.temporal import probe_temporal
from memsaga.doctor.database import (
    blob_store_check,
    durability_checks,
    gap_check,
    projection_check,
    projections_to_check,
    relay_check,
    schema_check,
    search_check,
)
from memsaga.doctor.jetstream import connect, stream_checks, sync_check
from memsaga.doctor.model import Check, Report, ok, problem, unreachable
from memsaga.errors import ServiceNotConfigured
from memsaga.settings import Settings
from projections.status import consumer_status

TIMEOUT = 3.0
"""Seconds each service gets to answer."""

_START = "start the local stack with `memsaga dev up`, or check the address"


async def run_doctor(settings: Settings) -> Report:
    """Every check against the services ``settings`` name."""
    checks: list[Check] = []
    nc = await _nats(settings, checks)
    try:
        checks.append(await _temporal(settings))
        await _database(settings, nc, checks)
    finally:
        if nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()
    return Report(checks=_ordered(checks))


_ORDER = ("postgres", "blobs", "search", "nats", "jetstream", "temporal", "relay", "projection")


def _ordered(checks: list[Check]) -> list[Check]:
    """By service (the order of :data:`_ORDER`), keeping the order within one."""
    rank = {prefix: i for i, prefix in enumerate(_ORDER)}
    return sorted(checks, key=lambda c: rank.get(c.name.split(".")[0], len(_ORDER)))


async def _nats(settings: Settings, checks: list[Check]) -> NATS | None:
    try:
        url = settings.require_nats_url()
    except ServiceNotConfigured as exc:
        checks.append(problem("nats", str(exc), "set MEMSAGA_NATS_URL"))
        return None
    try:
        nc = await connect(url, TIMEOUT)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        checks.append(
            unreachable("nats", f"{redact(url)} does not answer ({reason}); stream not checked", _START)
        )
        return None
    version = nc.connected_server_version
    checks.append(ok("nats", f"{redact(url)}, nats-server {version.major}.{version.minor}.{version.patch}"))
    checks += await stream_checks(nc, settings.nats_stream, settings.stream_replicas())
    checks.append(await sync_check(settings, url))
    return nc


async def _temporal(settings: Settings) -> Check:
    try:
        address = settings.require_temporal_address()
    except ServiceNotConfigured as exc:
        return problem("temporal", str(exc), "set MEMSAGA_TEMPORAL_ADDRESS")
    why = await probe_temporal(address, settings.temporal_namespace, timeout=TIMEOUT)
    if why is not None:
        return unreachable("temporal", f"{address} does not answer ({why})", _START)
    return ok("temporal", f"{address}, namespace {settings.temporal_namespace}")


async def _database(settings: Settings, nc: NATS | None, checks: list[Check]) -> None:
    try:
        dsn = settings.require_database_url()
    except ServiceNotConfigured as exc:
        checks.append(problem("postgres", str(exc), "set MEMSAGA_DATABASE_URL"))
        return
    try:
        pool = await create_pool(
            dsn,
            min_size=1,
            max_size=2,
            timeout=TIMEOUT,
            server_settings={"application_name": "memsaga-doctor"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as cause:
        checks.append(
            unreachable(
                "postgres",
                f"{redact(dsn)} does not answer ({type(cause).__name__}: {cause}); nothing stored checked",
                _START,
            )
        )
        return
    try:
        version = await pool.fetchval("SHOW server_version")
        checks.append(ok("postgres", f"{redact(dsn)}, PostgreSQL {version}"))
        checks.extend(await durability_checks(pool))
        schema = await schema_check(pool)
        checks.append(schema)
        if schema.status != "ok":
            return
        checks.append(await blob_store_check(pool))
        checks.append(await search_check(pool))
        await _stored(settings, pool, nc, checks)
    finally:
        await pool.close()


async def _stored(settings: Settings, pool: asyncpg.Pool, nc: NATS | None, checks: list[Check]) -> None:
    """Relay lag, the commit-order gap, and each projection (with its consumer when NATS answers)."""
    store, _ = build_stores(pool, settings)
    checks.append(await relay_check(pool, store, settings.nats_stream))
    checks.append(await gap_check(pool))
    js = None if nc is None else nc.jetstream(timeout=TIMEOUT)
    for projection in projections_to_check():
        consumer = None if js is None else await consumer_status(js, settings.nats_stream, projection)
        checks.append(await projection_check(pool, store, projection, consumer))
