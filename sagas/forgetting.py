"""Forgetting a user (GDPR art. 17) by crypto-shredding: the domain of the ``ForgetUser`` saga.

The saga appends ``UserForgetRequested`` to the user's stream ``user-<user_id>``, cancels the
user's running extraction sagas (they compensate, appending their compensating events while the
key still exists), destroys the user's data key, and appends ``UserForgotten``. Neither event
holds personal data: they are the auditable record that forgetting happened. Events stay (they
are facts); what they held of the user can no longer be read by anyone.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from eventstore import EventPayload, NewEvent, SchemaRegistry

FORGET_NAMESPACE = uuid.UUID("4f6d2f0c-8c51-4b5e-9f1e-6d2b1d0c7a31")
WORKFLOW_ID_PREFIX = "forget-"


def user_stream(user_id: str) -> str:
    """The stream of one user's account-level facts (forgetting)."""
    return f"user-{user_id}"


def forget_workflow_id(user_id: str) -> str:
    """The one workflow id of forgetting ``user_id``: a second request joins the first."""
    return WORKFLOW_ID_PREFIX + user_id


class UserForgetRequested(EventPayload):
    """Someone asked for the user to be forgotten."""

    event_type = "UserForgetRequested"
    requested_by: str | None = None
    """Who asked (an operator's name, ``mcp``, ``demo``); not the user's data."""


class UserForgotten(EventPayload):
    """The user's data key is destroyed: everything personal the user's events, blobs and saga
    histories held is unreadable, and every read model drops the user's rows."""

    event_type = "UserForgotten"
    cancelled_workflow_ids: list[str] = Field(default_factory=list)
    """The user's extraction sagas that were running and were cancelled (they compensated)."""
    key_destroyed: bool
    """False when the user had no key (nothing personal was ever stored)."""


FORGET_EVENTS: tuple[type[EventPayload], ...] = (UserForgetRequested, UserForgotten)


def register_forget_events(registry: SchemaRegistry) -> SchemaRegistry:
    """Register the forgetting events."""
    for model in FORGET_EVENTS:
        registry.register(model)
    return registry


class ForgetRequest(BaseModel):
    """Input of the ``ForgetUser`` workflow."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(min_length=1)
    requested_by: str | None = None


class ForgetResult(BaseModel):
    """What forgetting did (the workflow's result; also what ``memsaga forget --json`` prints)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    workflow_id: str
    already_forgotten: bool = False
    """True when the user had been forgotten before this request (nothing more was done)."""
    cancelled_workflow_ids: list[str] = Field(default_factory=list)
    key_destroyed: bool = False
    forgotten_event_id: str | None = None
    position: int | None = None
    """Where ``UserForgotten`` was stored: pass it to reads that must see the rows gone."""


def forget_event(
    workflow_id: str,
    key: str,
    user_id: str,
    payload: EventPayload,
    *,
    causation_id: str,
    occurred_at: datetime,
) -> NewEvent:
    """An event of the forget saga, its id derived from the workflow id and ``key`` (retries rebuild it)."""
    return NewEvent.of(
        payload,
        event_id=uuid.uuid5(FORGET_NAMESPACE, f"{workflow_id}:{key}"),
        correlation_id=workflow_id,
        causation_id=causation_id,
        user_id=user_id,
        occurred_at=occurred_at,
        metadata={"workflow_id": workflow_id, "saga_event": key},
    )
