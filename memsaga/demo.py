"""``memsaga demo``: the whole product once, on a fresh machine or beside running services.

Starts what is missing of the local stack, migrates, runs a worker, the relay and the
projector as real processes, extracts memories from a sample episode (approving its review),
shows them from the read model and recalls two of them, runs a later episode whose move to
Berlin supersedes the Lisbon memory (then shows that memory's history and what memsaga believed
before the move), runs a saga whose embedder fails so that it compensates, and prints the
causation trees with their Temporal UI links. It stops what it started unless asked to keep it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg
from temporalio.client import Client, WorkflowFailureError

from eventstore import PostgresBlobStore, migrate
from memsaga import devstack
from memsaga.bootstrap import MIGRATION_SOURCES, build_stores, connect_database, create_pool
from memsaga.client import (
    ExtractionHandle,
    approve_extraction,
    connect,
    extraction_result,
    extraction_status,
    start_extraction,
)
from memsaga.errors import MemsagaError
from memsaga.forget_verify import Verification, log_files, verify_forgotten
from memsaga.forgetting import forget_user
from memsaga.history import MemoryHistory, memory_history
from memsaga.search import Recall, SearchResult
from memsaga.settings import Settings
from memsaga.stackstate import load_stack_state, save_stack_state
from memsaga.trace_loader import LoadedTrace, trace_on
from projections import MEMORY_SEARCH, PROJECTIONS, Memory, connect_nats, list_memories
from projections.consistency import applied_position, has_applied
from projections.extensions import split_by_extensions
from projections.memories import query_memories
from sagas.forgetting import ForgetResult
from sagas.memory_extraction.domain import ExtractionOptions, ExtractionRequest, StepRetry

T = TypeVar("T")
ROLES = {"worker": ["worker"], "relay": ["relay"], "projector": ["project"]}
DEMO_USER_PREFIX = "demo-"
"""Each run's user is ``demo-<6 hex>``: a run never meets the memories of an earlier one."""


class DemoFailed(MemsagaError):
    """A demo step did not finish; the message says which and where its logs are."""


def sample(name: str) -> str:
    """A sample episode shipped with the package."""
    return (resources.files("memsaga") / "samples" / name).read_text()


@dataclass
class SagaRun:
    """One saga of the demo and how it ended."""

    handle: ExtractionHandle
    outcome: str
    memory_ids: list[str] = field(default_factory=list)
    trace: LoadedTrace | None = None
    last_position: int | None = None


@dataclass
class Change:
    """A later episode that changed a memory: the memories before and after, and its history."""

    run: SagaRun
    before: datetime
    """A moment just before the saga started (system time)."""
    believed_before: list[Memory] = field(default_factory=list)
    """``memories --as-of before``: what memsaga believed then."""
    now: list[Memory] = field(default_factory=list)
    valid_at: datetime | None = None
    """A moment after the Lisbon memory's world time began and before the move."""
    valid_then: list[Memory] = field(default_factory=list)
    """``memories --valid-at valid_at``: what was true then, as known now."""
    history: MemoryHistory | None = None
    """The superseded memory's history."""


@dataclass
class DemoReport:
    """Everything the demo shows, for the terminal and for ``--json``."""

    user: str = ""
    services: dict[str, str] = field(default_factory=dict)
    ui_url: str = ""
    sagas: list[SagaRun] = field(default_factory=list)
    memories: list[Memory] = field(default_factory=list)
    recall: list[SearchResult] = field(default_factory=list)
    recall_skipped: str | None = None
    change: Change | None = None
    forgotten: ForgetResult | None = None
    verification: Verification | None = None
    started: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "user": self.user,
            "services": self.services,
            "temporal_ui": self.ui_url,
            "sagas": [
                {
                    **run.handle.model_dump(),
                    "outcome": run.outcome,
                    "memory_ids": run.memory_ids,
                    "trace": run.trace.document if run.trace else None,
                }
                for run in self.sagas
            ],
            "memories": [m.model_dump(mode="json") for m in self.memories],
            "recall": [r.model_dump(mode="json") for r in self.recall],
            "recall_skipped": self.recall_skipped,
            "forgotten": None if self.forgotten is None else self.forgotten.model_dump(mode="json"),
            "verification": None if self.verification is None else self.verification.model_dump(mode="json"),
            "change": None
            if self.change is None
            else {
                "workflow_id": self.change.run.handle.workflow_id,
                "before": self.change.before.isoformat(),
                "memories_as_of_before": [m.model_dump(mode="json") for m in self.change.believed_before],
                "memories_now": [m.model_dump(mode="json") for m in self.change.now],
                "valid_at": None if self.change.valid_at is None else self.change.valid_at.isoformat(),
                "memories_valid_then": [m.model_dump(mode="json") for m in self.change.valid_then],
                "history": None
                if self.change.history is None
                else self.change.history.model_dump(mode="json"),
            },
            "started_services": self.started,
        }


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it answers; :raises DemoFailed: after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (answer := await probe()) is None:
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)
    return answer


def closed_port() -> int:
    """A local port nobody listens on: the failing embedder's address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """The worker, relay and projector as child processes, logging under the state dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = settings.state_dir.resolve() / "logs"
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def environment(self) -> dict[str, str]:
        """The children's environment: every service named explicitly."""
        s = self.settings
        return {
            **os.environ,
            "MEMSAGA_STATE_DIR": str(s.state_dir.resolve()),
            "MEMSAGA_DATABASE_URL": s.require_database_url(),
            "MEMSAGA_NATS_URL": s.require_nats_url(),
            "MEMSAGA_TEMPORAL_ADDRESS": s.require_temporal_address(),
            "MEMSAGA_TASK_QUEUE": s.task_queue,
            "MEMSAGA_NATS_STREAM": s.nats_stream,
            "MEMSAGA_SUBJECT_PREFIX": s.subject_prefix,
        }

    def start(self) -> None:
        """Start every role."""
        self.logs.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for role, args in ROLES.items():
            with (self.logs / f"demo-{role}.log").open("ab") as log:
                self.children[role] = subprocess.Popen(
                    [sys.executable, "-m", "memsaga", *args], env=env, stdout=log, stderr=subprocess.STDOUT
                )

    def check(self) -> None:
        """:raises DemoFailed: a child has exited."""
        for role, child in self.children.items():
            if child.poll() is not None:
                raise DemoFailed(
                    f"the {role} exited with code {child.returncode}: see {self.logs}/demo-{role}.log"
                )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child, SIGKILL what is still alive after ``timeout``."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def prepare_stack(settings: Settings, report: DemoReport) -> None:
    """Start what is missing of the local stack and migrate."""
    before = {s.name: s.up for s in await devstack.status(settings)}
    state = await devstack.up(settings)
    report.started = [n for n, s in state.services.items() if s.managed and not before.get(n, False)]
    report.services = {n: s.url for n, s in state.services.items()}
    report.ui_url = settings.temporal_ui()
    conn = await connect_database(settings)
    try:
        await migrate(conn, MIGRATION_SOURCES)
    finally:
        await conn.close()


async def reviewed_saga(
    client: Client, settings: Settings, blobs: PostgresBlobStore, procs: Processes, user: str
) -> SagaRun:
    """The sample episode: it holds a health fact, so the saga waits for review; approve it."""
    request = ExtractionRequest(user_id=user, text=sample("episode.txt"), source="demo")
    handle = await start_extraction(client, request, settings=settings, blobs=blobs)

    async def waiting() -> bool | None:
        procs.check()
        status = await extraction_status(client, handle.workflow_id)
        if status.waiting_for_review or status.outcome != "running":
            return status.waiting_for_review
        return None

    if await eventually(waiting, timeout=120, what="the first saga to reach its review"):
        await approve_extraction(client, handle.workflow_id, reviewer="demo", note="approved by memsaga demo")
    result = await extraction_result(client, handle.workflow_id)
    return SagaRun(handle, result.outcome, result.memory_ids, last_position=result.last_position)


MOVE = "Actually, I moved from Lisbon to Berlin. I don't live in Lisbon anymore."
"""The later episode: its new residence supersedes the first episode's Lisbon memory."""


async def changing_saga(
    client: Client,
    settings: Settings,
    blobs: PostgresBlobStore,
    pool: asyncpg.Pool,
    first: list[Memory],
    procs: Processes,
    user: str,
) -> Change:
    """The user moves: the saga supersedes the residence memory; show its history and the past view."""
    lisbon = next((m for m in first if m.slot == "residence"), None)
    if lisbon is None:
        raise DemoFailed("the first episode gave no residence memory to supersede: check the extractor")
    before = datetime.now(UTC)
    request = ExtractionRequest(user_id=user, text=MOVE, source="demo")
    handle = await start_extraction(client, request, settings=settings, blobs=blobs)
    result = await extraction_result(client, handle.workflow_id)
    change = Change(SagaRun(handle, result.outcome, result.memory_ids), before)

    async def superseded() -> list[Memory] | None:
        procs.check()
        everything = await query_memories(pool, user, statuses=["current", "superseded", "invalidated"])
        old = next((m for m in everything if m.memory_id == lisbon.memory_id), None)
        return everything if old is not None and old.status == "superseded" else None

    await eventually(superseded, timeout=120, what="the read model to show the Lisbon memory superseded")
    change.now = await list_memories(pool, user)
    change.believed_before = await query_memories(pool, user, as_of=before)
    if lisbon.valid_from is not None:
        change.valid_at = lisbon.valid_from + (before - lisbon.valid_from) / 2
        change.valid_then = await query_memories(pool, user, valid_at=change.valid_at)
    store, _ = build_stores(pool, settings)
    change.history = await memory_history(
        store,
        lisbon.memory_id,
        blobs=blobs,
        temporal_ui=settings.temporal_ui(),
        namespace=settings.temporal_namespace,
    )
    return change


async def failing_saga(client: Client, settings: Settings, blobs: PostgresBlobStore, user: str) -> SagaRun:
    """A second episode whose HTTP embedder points at a closed port: the saga compensates."""
    options = ExtractionOptions(
        embedder="http",
        embedder_base_url=f"http://127.0.0.1:{closed_port()}",
        retry=StepRetry(maximum_attempts=3, initial_interval_seconds=0.2, maximum_interval_seconds=0.5),
    )
    request = ExtractionRequest(
        user_id=user, text=sample("second_episode.txt"), source="demo", options=options
    )
    handle = await start_extraction(client, request, settings=settings, blobs=blobs)
    try:
        await extraction_result(client, handle.workflow_id)
    except WorkflowFailureError:
        return SagaRun(handle, "compensated")
    raise DemoFailed("the saga with a failing embedder did not fail: check the worker log")


async def wait_for_read_model(
    pool: asyncpg.Pool, user: str, memory_ids: list[str], procs: Processes
) -> list[Memory]:
    """The demo user's memories once the projector has applied every one of ``memory_ids``."""

    async def caught_up() -> list[Memory] | None:
        procs.check()
        memories = await list_memories(pool, user)
        return memories if set(memory_ids) <= {m.memory_id for m in memories} else None

    return await eventually(caught_up, timeout=120, what="the memories read model")


async def wait_for_projections(pool: asyncpg.Pool, runs: list[SagaRun], settings: Settings) -> None:
    """Load each saga's trace once every memory event in it shows the projections that applied it."""
    for run in runs:

        async def loaded(run: SagaRun = run) -> LoadedTrace | None:
            trace = await trace_on(pool, settings, run.handle.correlation_id, None)
            pending = [
                n
                for n in _nodes(trace.document["roots"])
                if n["event_type"].startswith("Memory") and not n["projections"]
            ]
            return None if pending else trace

        run.trace = await eventually(loaded, timeout=60, what="projections to apply the memory events")


def _nodes(trees: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for t in trees for n in (t, *_nodes(t["children"]))]


async def stop_started(settings: Settings, started: list[str]) -> None:
    """Stop the services this demo started, and only those."""
    state = load_stack_state(settings.state_dir)
    if set(started) >= {n for n, s in state.services.items() if s.managed}:
        await devstack.down(settings)
        return
    for name in started:
        devstack.stop_service(state.services.pop(name))
    save_stack_state(settings.state_dir, state)


QUESTIONS = ("where does the user live?", "what should I avoid cooking for them?")


async def recall(pool: asyncpg.Pool, settings: Settings, run: SagaRun, report: DemoReport) -> None:
    """Ask :data:`QUESTIONS` once the search read model has the saga's memories (read-your-writes)."""
    _, refused = await split_by_extensions(pool, [MEMORY_SEARCH])
    if refused:
        report.recall_skipped = str(refused[0])
        return
    async with Recall.open(settings) as searcher:
        for question in QUESTIONS:
            result = await searcher.search(
                question, user_id=report.user, k=3, after_position=run.last_position, timeout=60
            )
            report.recall.append(result)


CANARY = "allergic to peanuts"
"""What the demo's user said (memsaga/samples/episode.txt), looked for after forgetting them."""


async def forget_and_verify(
    client: Client, pool: asyncpg.Pool, settings: Settings, user: str
) -> tuple[ForgetResult, Verification]:
    """Forget ``user``, wait until every read model applied it, and look for :data:`CANARY`."""
    done = await forget_user(client, settings, user, requested_by="demo")
    store, _ = build_stores(pool, settings)
    position = done.position or await store.head_position()

    async def applied() -> bool | None:
        for projection in PROJECTIONS.values():
            if await applied_position(pool, projection) is None:
                continue  # not run here (memory_search without pgvector)
            if not await has_applied(pool, store, projection, position):
                return None
        return True

    await eventually(applied, timeout=60, what="the read models to drop the forgotten user")
    nc = await connect_nats(settings.require_nats_url(), name="memsaga-demo-verify")
    try:
        verification = await verify_forgotten(
            pool=pool, js=nc.jetstream(), stream=settings.nats_stream, temporal=client, user_id=user,
            canary=CANARY, logs=log_files(settings.state_dir),
        )  # fmt: skip
    finally:
        await nc.close()
    return done, verification


async def run_demo(settings: Settings, *, keep: bool, say: Callable[[str], None]) -> DemoReport:
    """Run the demo; ``say`` reports progress. :raises DemoFailed: a step failed (all stopped)."""
    report = DemoReport(user=f"{DEMO_USER_PREFIX}{uuid.uuid4().hex[:6]}")
    procs = Processes(settings)
    say("starting the local stack (what the environment does not name)")
    await prepare_stack(settings, report)
    try:
        say("starting the worker, the relay and the projector")
        procs.start()
        client = await connect(settings)
        pool = await create_pool(settings)
        try:
            _, blobs = build_stores(pool, settings)
            say("saga 1: extracting memories from the sample episode (it waits for a review: approving)")
            first = await reviewed_saga(client, settings, blobs, procs, report.user)
            say(f"saga 1 {first.outcome}: waiting for the memories read model")
            report.memories = await wait_for_read_model(pool, report.user, first.memory_ids, procs)
            say("recall: asking two questions about the user (after the saga's last position)")
            await recall(pool, settings, first, report)
            say("saga 2: a later episode says the user moved to Berlin: it supersedes the Lisbon memory")
            report.change = await changing_saga(
                client, settings, blobs, pool, report.memories, procs, report.user
            )
            say("saga 3: an embedder at a closed port fails for good, so the saga compensates")
            third = await failing_saga(client, settings, blobs, report.user)
            report.sagas = [first, report.change.run, third]
            say("loading the causation trees")
            await wait_for_projections(pool, report.sagas, settings)
            say(f"forgetting {report.user}: their sagas cancelled, their key destroyed, their rows dropped")
            report.forgotten, report.verification = await forget_and_verify(
                client, pool, settings, report.user
            )
        finally:
            await pool.close()
    finally:
        procs.stop()
        if not keep:
            await stop_started(settings, report.started)
    return report
