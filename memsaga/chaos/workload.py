"""The sagas of a chaos run: what each one is, and starting and deciding it through any outage.

Each saga has a user of its own, so its memories meet no other saga's: a memory created
twice for one fact can only be a duplicate effect. The texts repeat a fact (same words, and
the same fact in other words), which dedup and reconcile must keep to one memory.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError

from memsaga.chaos.ledger import Ledger, SagaKind, SagaRecord
from memsaga.client import approve_extraction, reject_extraction, start_extraction
from memsaga.errors import DatabaseUnreachable
from memsaga.settings import Settings
from sagas.memory_extraction.domain import ExtractionOptions, ExtractionRequest, StepRetry

T = TypeVar("T")
log = logging.getLogger(__name__)

KINDS: tuple[SagaKind, ...] = ("plain", "approve", "reject", "failing")
WEIGHTS = (0.45, 0.2, 0.15, 0.2)

PLAIN = (
    "I moved to {city} in May. I work as a {job}. I love hiking. I enjoy hiking.",
    "My sister Ana is a {job}. I love coffee. I love coffee. I live in {city}.",
)
SENSITIVE = "I'm allergic to peanuts. I work as a {job}. I live in {city}."
CITIES = ("Lisbon", "Porto", "Berlin", "Madrid", "Oslo")
JOBS = ("baker", "carpenter", "nurse", "teacher", "pilot")

RETRY = StepRetry(initial_interval_seconds=0.5, maximum_interval_seconds=2.0, maximum_attempts=3)
"""Quick resumption after an outage (backoff capped at 2 s); a failing adapter gives up after 3
attempts. Infrastructure errors are still retried for the default six hours."""

HEARTBEAT_SECONDS = 10.0
"""An extractor's or embedder's attempt lost with a killed worker is retried after this silence
(the default, 60 s, would hold a saga past the run's settle time)."""


def closed_port() -> int:
    """A local port nobody listens on (the failing embedder's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan_sagas(count: int, rng: random.Random, run: str) -> list[SagaRecord]:
    """``count`` sagas of random kinds (at least one of each when ``count`` allows)."""
    kinds = list(KINDS[:count]) + rng.choices(KINDS, weights=WEIGHTS, k=max(0, count - len(KINDS)))
    rng.shuffle(kinds)
    plans = []
    for i, kind in enumerate(kinds):
        words = {"city": rng.choice(CITIES), "job": rng.choice(JOBS)}
        template = rng.choice(PLAIN) if kind in ("plain", "failing") else SENSITIVE
        plans.append(
            SagaRecord(
                workflow_id=f"extract-chaos-{run}-{i:05d}",
                kind=kind,
                user_id=f"chaos-{run}-u{i:05d}",
                text=template.format(**words),
            )
        )
    return plans


def request_for(saga: SagaRecord) -> ExtractionRequest:
    """The saga's request: offline adapters, or an embedder at a closed port for ``failing``."""
    options = ExtractionOptions(
        review=saga.kind in ("approve", "reject"),
        extractor="rules",
        embedder="http" if saga.kind == "failing" else "hashing",
        embedder_base_url=f"http://127.0.0.1:{closed_port()}" if saga.kind == "failing" else None,
        heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        retry=RETRY,
    )
    return ExtractionRequest(user_id=saga.user_id, text=saga.text, source="chaos", options=options)


async def patiently(action: Callable[[], Awaitable[T]], *, stop: asyncio.Event, timeout: float = 300.0) -> T:
    """``action()`` until Temporal (and PostgreSQL, which the client's codec reads: the saga's
    owner and key) answer it (they may be down or restarting), within ``timeout``.

    :raises TimeoutError: it never did.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.2
    while True:
        try:
            return await asyncio.wait_for(action(), timeout=15.0)
        except (RPCError, RuntimeError, TimeoutError, OSError, DatabaseUnreachable):
            if stop.is_set() or loop.time() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def start_saga(
    client: Client, settings: Settings, saga: SagaRecord, ledger: Ledger, stop: asyncio.Event
) -> None:
    """Start the saga (idempotent under its workflow id) and send its review decision; when that
    cannot be done in time, say why in the ledger (the checks then count the request as lost)."""
    try:
        await _start_and_decide(client, settings, saga, ledger, stop)
    except Exception as exc:
        saga.start_error = f"{type(exc).__name__}: {exc}"
        log.warning("saga %s could not be started or decided: %s", saga.workflow_id, saga.start_error)


async def _start_and_decide(
    client: Client, settings: Settings, saga: SagaRecord, ledger: Ledger, stop: asyncio.Event
) -> None:
    request = request_for(saga)
    await patiently(
        lambda: start_extraction(client, request, workflow_id=saga.workflow_id, settings=settings), stop=stop
    )
    saga.started_at = ledger.now()
    if saga.kind == "approve":
        await patiently(lambda: approve_extraction(client, saga.workflow_id, reviewer="chaos"), stop=stop)
        saga.decided = True
    elif saga.kind == "reject":
        await patiently(
            lambda: reject_extraction(client, saga.workflow_id, reviewer="chaos", reason="chaos rejects"),
            stop=stop,
        )
        saga.decided = True


async def start_all(
    client: Client,
    settings: Settings,
    sagas: list[SagaRecord],
    ledger: Ledger,
    *,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Start ``sagas`` one every ``interval`` seconds (each start and decision in a task of its own)."""
    pending: set[asyncio.Task[None]] = set()
    for saga in sagas:
        if stop.is_set():
            break
        ledger.planned(saga)
        task = asyncio.create_task(start_saga(client, settings, saga, ledger, stop))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(interval)
    if pending:
        await asyncio.gather(*pending)
