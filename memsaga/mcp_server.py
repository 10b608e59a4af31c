"""memsaga for agents: a Model Context Protocol server with the tools ``remember`` and ``recall``.

One :class:`~memsaga.search.Recall` (pool and embedder) and one Temporal client serve every
call; both are opened in the server's lifespan, once per process, whatever the transport.
Every call is scoped to one user: the one the server was started for (``memsaga mcp --user``),
or else the ``user_id`` the call gives. Our named errors become MCP tool errors (the message
for the model to read, no traceback) in :func:`_tool_errors`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from memsaga.client import (
    ExtractionFailed,
    connect,
    extraction_options,
    extraction_outcome,
    extraction_status,
    start_extraction_of_text,
    workflow_id_for,
)
from memsaga.errors import MemsagaError, TemporalUnreachable
from memsaga.history import MemoryHistory, memory_history
from memsaga.retraction import MemoryNotFound, Retraction, retract_memory
from memsaga.search import MAX_K, Recall, SearchResult
from memsaga.settings import MCP_WAIT_SECONDS as DEFAULT_WAIT_SECONDS
from memsaga.settings import Settings
from projections import ProjectionsError
from sagas.memory_extraction.domain import (
    ExtractionRequest,
    ExtractionResult,
    ExtractionStatus,
    InvalidExtractionRequest,
)
from sagas.memory_extraction.events import MemoryKind
from sagas.memory_extraction.identifiers import identifier_problem
from sagas.memory_extraction.ports import AdapterError

SERVER_NAME = "memsaga"

UserIdArg = Annotated[
    str | None,
    Field(description="Whose memories. Required, unless the server was started for one user (--user)."),
]


class WrongUser(MemsagaError, ValueError):
    """A call's user is missing, not one memsaga accepts, or not the one the server was started for."""


async def owned_history(services: Services, memory_id: str, user_id: str) -> MemoryHistory:
    """``memory_id``'s history when it is ``user_id``'s memory.

    :raises MemoryNotFound: there is no such memory of this user (another user's is not shown).
    """
    history = await memory_history(
        services.recall.store, memory_id, temporal_ui=services.settings.temporal_ui()
    )
    if history.user_id != user_id:
        raise MemoryNotFound(memory_id)
    return history


@dataclass
class Services:
    """What the tools share for the life of the server process."""

    recall: Recall
    temporal: Client
    settings: Settings


class Remembered(BaseModel):
    """A started (or, under the same id, already started) extraction saga."""

    workflow_id: str
    correlation_id: str
    user_id: str
    url: str
    result: ExtractionResult | ExtractionFailed | None = None
    """With ``wait``, once the saga finished: its ``last_position`` makes ``recall`` read it."""
    status: ExtractionStatus | None = None
    """With ``wait``, when the saga had not finished in time (e.g. it waits for a human review)."""


def scoped_user(fixed: str | None, given: str | None) -> str:
    """The user a call acts for. :raises WrongUser: none given, or not the fixed one."""
    given = given.strip() if given is not None else None
    if fixed is None:
        if not given:
            raise WrongUser("user_id is required: this server serves any user, so each call names one")
        if problem := identifier_problem(given, "user_id"):
            raise WrongUser(problem)
        return given
    if given and given != fixed:
        raise WrongUser(
            f"this server serves user {fixed!r} only (memsaga mcp --user {fixed}), not {given!r}:"
            " leave user_id out"
        )
    return fixed


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Our named errors as tool errors: their message, for the model to act on."""
    try:
        yield
    except (MemsagaError, InvalidExtractionRequest, ProjectionsError, AdapterError) as exc:
        raise ToolError(str(exc)) from None
    except RPCError as exc:
        raise ToolError(f"Temporal refused: {exc}") from None


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """The pool, embedder and Temporal client of one server process.

    :raises DatabaseUnreachable: PostgreSQL cannot be reached.
    :raises TemporalUnreachable: Temporal cannot be reached.
    :raises ServiceNotConfigured: a service URL is not known.
    """
    async with Recall.open(settings) as recall:
        try:
            temporal = await connect(settings)
        except RuntimeError as exc:  # temporalio's "failed client connect"
            raise TemporalUnreachable(settings.require_temporal_address(), exc) from None
        yield Services(recall, temporal, settings)


async def remember(
    services: Services,
    text: str,
    *,
    user_id: str,
    source: str = "chat",
    wait: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    request_id: str | None = None,
) -> Remembered:
    """Start a memory-extraction saga from ``text``; with ``wait``, its outcome or its status.

    ``request_id`` makes a retried call return the saga the first call started (``extract-<id>``).
    """
    settings = services.settings
    request = ExtractionRequest(
        user_id=user_id, text=text, source=source, options=extraction_options(settings)
    )
    handle = await start_extraction_of_text(
        services.temporal,
        request,
        settings=settings,
        pool=services.recall.pool,
        workflow_id=workflow_id_for(request_id) if request_id else None,
    )
    shown = Remembered(**handle.model_dump(include={"workflow_id", "correlation_id", "user_id", "url"}))
    if not wait:
        return shown
    outcome = asyncio.ensure_future(extraction_outcome(services.temporal, handle.workflow_id))
    review = asyncio.ensure_future(_until_review(services.temporal, handle.workflow_id))
    try:
        await asyncio.wait({outcome, review}, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (outcome, review):
            task.cancel()
        await asyncio.gather(outcome, review, return_exceptions=True)
    if outcome.done() and not outcome.cancelled():
        return shown.model_copy(update={"result": outcome.result()})
    if review.done() and not review.cancelled():
        return shown.model_copy(update={"status": review.result()})
    return shown.model_copy(update={"status": await extraction_status(services.temporal, handle.workflow_id)})


REVIEW_POLL_SECONDS = 0.5
"""How often a waiting ``remember`` asks whether its saga now waits for a human review."""


async def _until_review(client: Client, workflow_id: str) -> ExtractionStatus:
    """The saga's status once it waits for a review (no outcome comes without a human)."""
    while True:
        await asyncio.sleep(REVIEW_POLL_SECONDS)
        try:
            status = await extraction_status(client, workflow_id)
        except (RPCError, MemsagaError):
            continue  # no worker answered the query just now: the outcome or the timeout decides
        if status.waiting_for_review:
            return status


def build_server(
    settings: Settings, *, user: str | None = None, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> MCPServer[Services]:
    """The MCP server over ``settings``' stack, for ``user`` only when one is given.

    :raises WrongUser: ``user`` is not an id memsaga accepts.
    """
    if user is not None and (problem := identifier_problem(user, "--user")):
        raise WrongUser(problem)

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        async with open_services(settings) as services:
            yield services

    whose = f"user {user!r} (user_id may be left out)" if user else "the user each call names in user_id"
    server: MCPServer[Services] = MCPServer(
        SERVER_NAME,
        instructions=f"Long-term memory of {whose}: `remember` what is worth keeping from a"
        " conversation, `recall` what is known before answering.",
        lifespan=lifespan,
    )

    async def remember_tool(
        ctx: Context[Services, Any],
        text: Annotated[str, Field(description="The episode: what was said, as plain text.")],
        user_id: UserIdArg = None,
        source: Annotated[str, Field(description="Where the episode comes from.")] = "chat",
        wait: Annotated[bool, Field(description="Wait for the saga's outcome.")] = False,
        request_id: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=200,
                description="Your id of this request: a retry with the same id returns the same saga.",
            ),
        ] = None,
    ) -> Remembered:
        """Start extracting long-term memories from an episode's text (a saga); returns its ids.

        With wait, also its outcome (memory ids, and last_position: pass it to recall as
        after_position to read these memories), or, when it is still running after the
        server's wait limit (a sensitive episode waits for a human review), its status.
        """
        with _tool_errors():
            services = ctx.request_context.lifespan_context
            return await remember(
                services,
                text,
                user_id=scoped_user(user, user_id),
                source=source,
                wait=wait,
                wait_seconds=wait_seconds,
                request_id=request_id,
            )

    async def recall_tool(
        ctx: Context[Services, Any],
        query: Annotated[str, Field(description='The question, e.g. "where does the user live?".')],
        user_id: UserIdArg = None,
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many memories at most.")] = 10,
        kinds: Annotated[list[MemoryKind] | None, Field(description="Only memories of these kinds.")] = None,
        after_position: Annotated[
            int | None, Field(ge=0, description="First wait until search has applied this position.")
        ] = None,
    ) -> SearchResult:
        """The k memories of the user that best answer the query, best first, with scores and sources.

        after_position (a remember result's last_position) makes the search see that saga's
        memories: it first waits until the search read model has caught up with it.
        """
        with _tool_errors():
            services = ctx.request_context.lifespan_context
            return await services.recall.search(
                query,
                user_id=scoped_user(user, user_id),
                k=k,
                kinds=kinds or (),
                after_position=after_position,
            )

    async def memory_history_tool(
        ctx: Context[Services, Any],
        memory_id: Annotated[str, Field(min_length=1, description="A memory id (from recall).")],
        user_id: UserIdArg = None,
    ) -> MemoryHistory:
        """A memory's state now (current, superseded, invalidated, retracted; its validity in
        time) and every event that made it so, each with the episode and saga it came from."""
        with _tool_errors():
            services = ctx.request_context.lifespan_context
            return await owned_history(services, memory_id, scoped_user(user, user_id))

    async def forget_memory_tool(
        ctx: Context[Services, Any],
        memory_id: Annotated[str, Field(min_length=1, description="A memory id (from recall).")],
        reason: Annotated[str, Field(min_length=1, description="Why (recorded in the event).")],
        user_id: UserIdArg = None,
    ) -> Retraction:
        """Withdraw one memory (the user asked for it to be forgotten): MemoryRetracted is
        appended and the memory leaves recall; retracting it again reports that it was already."""
        with _tool_errors():
            services = ctx.request_context.lifespan_context
            await owned_history(services, memory_id, scoped_user(user, user_id))
            return await retract_memory(services.recall.store, memory_id, reason=reason, retracted_by="mcp")

    tools = (
        ("remember", remember_tool),
        ("recall", recall_tool),
        ("memory_history", memory_history_tool),
        ("forget_memory", forget_memory_tool),
    )
    for name, tool in tools:
        server.add_tool(tool, name=name, description=inspect.getdoc(tool))
    return server
