"""The event envelope: what callers append (:class:`NewEvent`) and what they read back
(:class:`RecordedEvent`), plus expected-version values and the results of appends and counts."""

from __future__ import annotations

import enum
import uuid
import weakref
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EventPayload(BaseModel):
    """Base of every registered payload model: names its event type and schema version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1


class StreamState(enum.Enum):
    """Expected-version values other than an exact version."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"


ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS

ExpectedVersion = int | StreamState
"""An exact version (0 means "no stream"), or one of :class:`StreamState`."""


class Direction(enum.Enum):
    """Reading direction of a stream."""

    FORWARD = "forward"
    BACKWARD = "backward"


class NewEvent(BaseModel):
    """An event to append. ``occurred_at`` comes from the producer so that replays are deterministic."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str = Field(min_length=1)
    event_version: int = Field(ge=1)
    payload: dict[str, Any]
    correlation_id: str = Field(min_length=1)
    causation_id: str = Field(min_length=1)
    user_id: str | None = None
    occurred_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware (use datetime.now(UTC) or workflow.now())")
        return value

    @classmethod
    def of(
        cls,
        payload: EventPayload,
        *,
        correlation_id: str,
        causation_id: str,
        occurred_at: datetime,
        user_id: str | None = None,
        event_id: uuid.UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> NewEvent:
        """Build an event from a registered payload model (type and version come from its class).

        The payload is already valid: an append validates it again only when its model is not
        the one registered for the type and version (:meth:`SchemaRegistry.validate`). Change
        neither it nor what it holds afterwards.
        """
        event = cls(
            event_id=event_id or uuid.uuid4(),
            event_type=payload.event_type,
            event_version=payload.event_version,
            payload=payload.model_dump(mode="json"),
            correlation_id=correlation_id,
            causation_id=causation_id,
            user_id=user_id,
            occurred_at=occurred_at,
            metadata=metadata or {},
        )
        key = id(event)

        def gone(ref: weakref.ref[NewEvent]) -> None:
            if _DUMPED.get(key, (None,))[0] is ref:
                del _DUMPED[key]

        _DUMPED[key] = (weakref.ref(event, gone), type(payload), event.payload)
        return event

    def dumped_from(self) -> type[EventPayload] | None:
        """The payload model whose dump this event's payload is (built by :meth:`of`), else None."""
        dumped = _DUMPED.get(id(self))
        if dumped is None or dumped[0]() is not self or dumped[2] is not self.payload:
            return None
        return dumped[1]


_DUMPED: dict[int, tuple[weakref.ref[NewEvent], type[EventPayload], dict[str, Any]]] = {}
"""Events :meth:`NewEvent.of` built, by ``id``: a weak reference to the event, the model its
payload was dumped from and that very payload dict. Kept outside the model, so that equality,
copies and serialisation of events are as they were (a copy, or a decoded event, is validated
again); an entry goes with its event."""


class RecordedEvent(BaseModel):
    """An event as stored: the envelope with its stream version and global position.

    ``event_version`` is the schema version of ``payload`` as given here, after upcasting;
    ``stored_version`` is the version it was written with (events are never rewritten).
    ``sealed`` is the ciphertext of an event with personal fields as stored, whose ``payload``
    is then redacted (:mod:`eventstore.encryption`); None once it is opened, or for a plain
    event. In JSON (JetStream messages) it is base64.
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    event_id: uuid.UUID
    stream_id: str
    version: int
    position: int
    event_type: str
    event_version: int
    stored_version: int
    correlation_id: str
    causation_id: str
    user_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]
    metadata: dict[str, Any]
    sealed: bytes | None = None

    @property
    def category(self) -> str:
        """The stream's category: the part of the stream id before the first ``-``."""
        return self.stream_id.split("-", 1)[0]

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> RecordedEvent:
        """An envelope from values already checked (rows the store wrote), without validation.

        What ``model_construct`` does for a model without defaults, extras or private
        attributes, minus its per-field bookkeeping: replays build millions of these.
        ``fields`` must hold exactly the model's fields and becomes the instance's state.
        """
        event = cls.__new__(cls)
        _set = object.__setattr__
        _set(event, "__dict__", fields)
        # Shared: pydantic only reads it, and model_copy copies it before adding to it.
        _set(event, "__pydantic_fields_set__", _RECORDED_FIELDS)
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


_RECORDED_FIELDS = set(RecordedEvent.model_fields)


class AppendResult(BaseModel):
    """Where an append put its events. ``duplicate`` is True when it was an idempotent re-send."""

    model_config = ConfigDict(frozen=True)

    stream_id: str
    first_version: int
    last_version: int
    positions: list[int]
    duplicate: bool = False

    @property
    def next_expected_version(self) -> int:
        """The expected version to pass to the next append on this stream."""
        return self.last_version


class Backlog(BaseModel):
    """Events after a position: how many, and how long the oldest has waited by the store's clock
    (0 when none). What a reader at that position still has to do."""

    model_config = ConfigDict(frozen=True)

    events: int
    seconds: float
