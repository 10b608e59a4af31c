"""Activities of the ``ForgetUser`` saga (sagas/forgetting.py): record, find and cancel the
user's running sagas, destroy the key, record that it is done. Each is idempotent: event ids are
derived from the workflow id, and destroying a destroyed key changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

from activities.errors import activity_defn
from eventstore import ANY, PostgresEventStore
from eventstore.keys import KeyRing
from sagas.forgetting import (
    ForgetResult,
    UserForgetRequested,
    UserForgotten,
    forget_event,
    user_stream,
)

EXTRACTION_WORKFLOW_TYPE = "MemoryExtraction"
USER_WORKFLOW_TYPES = (EXTRACTION_WORKFLOW_TYPE, "EpisodeReextraction")
"""Sagas that write a user's data: a forget cancels those of its user and waits for them to close."""


class ForgetStep(BaseModel):
    """What every step of one forget saga knows."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    user_id: str
    occurred_at: datetime
    requested_by: str | None = None


class Requested(BaseModel):
    """The ``UserForgetRequested`` event, or the ``UserForgotten`` of an earlier request."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    already: ForgetResult | None = None


class RecordForgotten(BaseModel):
    """Input of :meth:`ForgettingActivities.record_forgotten`."""

    model_config = ConfigDict(frozen=True)

    step: ForgetStep
    causation_id: str
    cancelled_workflow_ids: list[str]
    key_destroyed: bool


class StillRunning(Exception):
    """Sagas that were cancelled have not finished compensating yet (retried by Temporal)."""


def visibility_literal(value: str) -> str:
    """``value`` as a quoted literal of Temporal's list filter."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ForgettingActivities:
    """The forget saga's activities over the event store, the key ring and Temporal."""

    def __init__(self, store: PostgresEventStore, keyring: KeyRing, temporal: Client) -> None:
        self.store = store
        self.keyring = keyring
        self.temporal = temporal

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for the worker."""
        return [
            self.record_forget_requested,
            self.running_sagas,
            self.await_sagas_closed,
            self.destroy_key,
            self.record_forgotten,
        ]

    @activity_defn("forgetting.record_forget_requested")
    async def record_forget_requested(self, step: ForgetStep) -> Requested:
        """``UserForgetRequested``, unless the user was forgotten already (then that result)."""
        stream = user_stream(step.user_id)
        events = await self.store.read_stream(stream)
        done = next((e for e in events if e.event_type == UserForgotten.event_type), None)
        if done is not None:
            payload = UserForgotten.model_validate(done.payload)
            return Requested(
                event_id=str(done.event_id),
                already=ForgetResult(
                    user_id=step.user_id,
                    workflow_id=step.workflow_id,
                    already_forgotten=True,
                    cancelled_workflow_ids=payload.cancelled_workflow_ids,
                    key_destroyed=payload.key_destroyed,
                    forgotten_event_id=str(done.event_id),
                    position=done.position,
                ),
            )
        event = forget_event(
            step.workflow_id, "requested", step.user_id, UserForgetRequested(requested_by=step.requested_by),
            causation_id=step.workflow_id, occurred_at=step.occurred_at,
        )  # fmt: skip
        await self.store.append(stream, [event], expected_version=ANY)
        return Requested(event_id=str(event.event_id))

    @activity_defn("forgetting.running_sagas")
    async def running_sagas(self, step: ForgetStep) -> list[str]:
        """The workflow ids of the user's extraction and episode re-extraction sagas still
        running (Temporal visibility)."""
        types = " OR ".join(f"WorkflowType = {visibility_literal(t)}" for t in USER_WORKFLOW_TYPES)
        query = f"({types}) AND ExecutionStatus = 'Running' AND UserId = {visibility_literal(step.user_id)}"
        return sorted({w.id async for w in self.temporal.list_workflows(query)})

    @activity_defn("forgetting.await_sagas_closed")
    async def await_sagas_closed(self, workflow_ids: list[str]) -> None:
        """Return once every saga in ``workflow_ids`` has closed (their compensations are done).

        :raises StillRunning: after about 30 s of waiting (Temporal retries with backoff).
        """
        for _ in range(30):
            running = []
            for workflow_id in workflow_ids:
                described = await self.temporal.get_workflow_handle(workflow_id).describe()
                if described.status == WorkflowExecutionStatus.RUNNING:
                    running.append(workflow_id)
            if not running:
                return
            activity.heartbeat(running)
            await asyncio.sleep(1.0)
        raise StillRunning(f"still compensating: {', '.join(running)}")

    @activity_defn("forgetting.destroy_key")
    async def destroy_key(self, step: ForgetStep) -> bool:
        """Destroy the user's data key; True when a live key was destroyed."""
        return await self.keyring.destroy(step.user_id)

    @activity_defn("forgetting.record_forgotten")
    async def record_forgotten(self, input: RecordForgotten) -> ForgetResult:
        """``UserForgotten``: the auditable record (no personal data in it)."""
        step = input.step
        payload = UserForgotten(
            cancelled_workflow_ids=input.cancelled_workflow_ids, key_destroyed=input.key_destroyed
        )
        event = forget_event(
            step.workflow_id, "forgotten", step.user_id, payload,
            causation_id=input.causation_id, occurred_at=step.occurred_at,
        )  # fmt: skip
        result = await self.store.append(user_stream(step.user_id), [event], expected_version=ANY)
        return ForgetResult(
            user_id=step.user_id,
            workflow_id=step.workflow_id,
            cancelled_workflow_ids=input.cancelled_workflow_ids,
            key_destroyed=input.key_destroyed,
            forgotten_event_id=str(event.event_id),
            position=result.positions[-1],
        )
