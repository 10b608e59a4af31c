"""Forget a user (``memsaga forget``, ``memsaga.client.forget_user``): start the ``ForgetUser``
saga, or join the one running, and wait for its result (docs/privacy.md)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from sagas.forgetting import ForgetRequest, ForgetResult, forget_workflow_id
from sagas.memory_extraction.identifiers import identifier_problem
from workflows.forget_user import ForgetUser


class ForgetFailed(MemsagaError):
    """The forget saga ended without forgetting (the message names the cause)."""


class InvalidForgetRequest(MemsagaError, ValueError):
    """The forget request is malformed (the message says what to change)."""


async def forget_user(
    client: Client, settings: Settings, user_id: str, *, requested_by: str | None = None
) -> ForgetResult:
    """Forget ``user_id`` and return what was done; a user forgotten before is reported as
    ``already_forgotten`` (nothing more happens). A request while one runs joins it.

    :raises InvalidForgetRequest: the user id breaks the identifier rule (identifiers.py).
    :raises ForgetFailed: the saga failed.
    """
    problem = identifier_problem(user_id, "--user")
    if problem is not None:
        raise InvalidForgetRequest(problem)
    request = ForgetRequest(user_id=user_id, requested_by=requested_by)
    handle = await client.start_workflow(
        ForgetUser.run,
        request,
        id=forget_workflow_id(user_id),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        raise ForgetFailed(f"forgetting {user_id!r} failed: {exc.cause or exc}") from exc
