"""Helpers of the saga integration tests: a running worker + stores, polling, event comparison."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
from temporalio.client import Client

from eventstore import PostgresBlobStore, PostgresEventStore, RecordedEvent
from memsaga.client import ExtractionHandle, extraction_status, start_extraction
from memsaga.settings import Settings
from sagas.memory_extraction.domain import (
    ExtractionOptions,
    ExtractionRequest,
    ExtractionStatus,
    StepRetry,
    derived_id,
    episode_id_for,
)

T = TypeVar("T")

EPISODE = "User: I live in Lisbon. My sister Ana is a nurse. I love hiking.\nAssistant: Nice!"
"""Three plain memories (fact, relation, preference): no review needed."""
SENSITIVE_EPISODE = "I'm allergic to peanuts. I work as a baker."
"""One health memory (review needed) and one plain one."""
FAST_RETRY = StepRetry(maximum_attempts=2, initial_interval_seconds=0.1, maximum_interval_seconds=0.2)


@dataclass
class SagaEnv:
    """A worker's world: Temporal client, its task queue, and the stores it writes."""

    client: Client
    pool: asyncpg.Pool
    store: PostgresEventStore
    blobs: PostgresBlobStore
    settings: Settings

    async def start(self, request: ExtractionRequest, key: str | None = None) -> ExtractionHandle:
        """Start a saga on this env's task queue (key: a fresh one)."""
        return await start_extraction(
            self.client,
            request,
            workflow_id=key or uuid.uuid4().hex,
            settings=self.settings,
            blobs=self.blobs,
        )

    async def events(self, handle: ExtractionHandle) -> list[RecordedEvent]:
        """Every event of the saga (one correlation id), in position order."""
        return await self.store.read_correlation(handle.correlation_id)

    async def wait_status(
        self, workflow_id: str, predicate: Callable[[ExtractionStatus], bool], timeout: float = 30.0
    ) -> ExtractionStatus:
        """Poll the status query until ``predicate`` holds."""

        async def probe() -> ExtractionStatus | None:
            status = await extraction_status(self.client, workflow_id)
            return status if predicate(status) else None

        return await eventually(probe, timeout, f"status of {workflow_id}")


def request(text: str = EPISODE, *, user_id: str | None = None, **options: object) -> ExtractionRequest:
    """A request for a fresh user (so dedup never meets other tests' memories)."""
    chosen = ExtractionOptions.model_validate({"retry": FAST_RETRY, **options})
    return ExtractionRequest(user_id=user_id or f"user-{uuid.uuid4().hex[:8]}", text=text, options=chosen)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """The first non-None answer of ``probe``, polled every 50 ms for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await probe()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def types(events: list[RecordedEvent]) -> list[str]:
    """The event types, in order."""
    return [e.event_type for e in events]


def normalised(events: list[RecordedEvent], workflow_id: str) -> list[tuple[str, str, int, str, str, str]]:
    """Events with the workflow's derived ids replaced by their keys, to compare two runs.

    Each event id must be exactly ``derived_id(workflow_id, <its saga_event key>)``; the
    stream ids are rewritten with the episode id and memory ids the workflow id derives.
    """
    episode = episode_id_for(workflow_id)
    names = {episode: "<episode>"}
    result = []
    for e in events:
        key = e.metadata["saga_event"]
        assert e.event_id == derived_id(workflow_id, key), f"{e.event_type} id is not derived from {key}"
        if e.event_type == "MemoryCreated":
            names[e.payload["memory_id"]] = f"<memory:{key}>"
        stream = e.stream_id
        for real, placeholder in names.items():
            stream = stream.replace(real, placeholder)
        causation = e.causation_id if e.causation_id == workflow_id else _key_of(events, e.causation_id)
        result.append(
            (
                e.event_type,
                stream,
                e.version,
                key,
                causation.replace(workflow_id, "<wf>"),
                e.correlation_id.replace(workflow_id, "<wf>"),
            )
        )
    return result


def _key_of(events: list[RecordedEvent], event_id: str) -> str:
    return str(next(e.metadata["saga_event"] for e in events if str(e.event_id) == event_id))


HISTORIES = Path(__file__).parent / "histories"
"""Saved workflow histories replayed by test_replay.py (regenerate: record_histories.py)."""
