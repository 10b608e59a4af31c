"""Payload schemas per (event type, schema version), and upcasters between versions.

Append validates a payload against the model of the version it names. On read, upcasters
registered per (event type, from version) are chained v1 -> v2 -> v3...; stored events are
never rewritten, and an event whose type this code does not know is returned raw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from eventstore.envelope import EventPayload, NewEvent, RecordedEvent
from eventstore.errors import InvalidPayload, UnknownEventType

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
P = TypeVar("P", bound=type[EventPayload])


class SchemaRegistry:
    """Maps (event type, version) to payload models and (event type, from version) to upcasters."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[EventPayload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: P) -> P:
        """Register a payload model under its ``event_type``/``event_version`` (usable as a decorator)."""
        key = (model.event_type, model.event_version)
        existing = self._models.get(key)
        if existing is not None and existing is not model:
            raise ValueError(f"{key[0]} v{key[1]} is already registered to {existing.__name__}")
        self._models[key] = model
        return model

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register the function that turns a ``from_version`` payload into ``from_version + 1``."""
        self._upcasters[(event_type, from_version)] = upcaster

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`register_upcaster`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self.register_upcaster(event_type, from_version, fn)
            return fn

        return decorate

    def models(self) -> dict[tuple[str, int], type[EventPayload]]:
        """Every registered (event type, version) and its model, sorted (a copy)."""
        return dict(sorted(self._models.items()))

    def versions(self, event_type: str) -> list[int]:
        """Registered schema versions of a type, ascending."""
        return sorted(v for (t, v) in self._models if t == event_type)

    def latest_version(self, event_type: str) -> int | None:
        """The newest registered version of a type, or None when it is unknown."""
        versions = self.versions(event_type)
        return versions[-1] if versions else None

    def model_for(self, event_type: str, event_version: int) -> type[EventPayload] | None:
        """The payload model of one version, if registered."""
        return self._models.get((event_type, event_version))

    def validate(self, event: NewEvent) -> dict[str, Any]:
        """The payload normalised by its model (JSON-ready); a payload :meth:`NewEvent.of` dumped
        from the registered model itself is that already, and is returned as it is.

        :raises UnknownEventType: no model for this type and version.
        :raises InvalidPayload: the payload does not fit the model; names each bad field.
        """
        model = self._models.get((event.event_type, event.event_version))
        if model is None:
            raise UnknownEventType(event.event_type, event.event_version, self.versions(event.event_type))
        if event.dumped_from() is model:
            return event.payload
        try:
            return model.model_validate(event.payload).model_dump(mode="json")
        except ValidationError as exc:
            errors = [
                (".".join(str(p) for p in err["loc"]) or "<payload>", err["msg"]) for err in exc.errors()
            ]
            raise InvalidPayload(event.event_type, event.event_version, errors) from None

    def upcast(self, event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Chain upcasters from ``version`` while one is registered; returns the final version and payload."""
        while (fn := self._upcasters.get((event_type, version))) is not None:
            payload = fn(dict(payload))
            version += 1
        return version, payload

    def decode(self, event: RecordedEvent) -> EventPayload | None:
        """The typed payload of a recorded event, or None when its type/version is not registered."""
        model = self._models.get((event.event_type, event.event_version))
        return None if model is None else model.model_validate(event.payload)
