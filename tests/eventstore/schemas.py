"""Payload models used by the event-store tests (three versions of one type, for upcasting)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from eventstore import EventPayload, SchemaRegistry


class Noted(EventPayload):
    event_type = "Noted"
    text: str
    tags: list[str] = Field(default_factory=list)


class ProfileV1(EventPayload):
    event_type = "ProfileUpdated"
    event_version = 1
    name: str


class ProfileV2(EventPayload):
    event_type = "ProfileUpdated"
    event_version = 2
    first_name: str
    last_name: str


class ProfileV3(EventPayload):
    event_type = "ProfileUpdated"
    event_version = 3
    first_name: str
    last_name: str
    locale: str


def split_name(payload: dict[str, Any]) -> dict[str, Any]:
    first, _, last = payload.pop("name").partition(" ")
    return {**payload, "first_name": first, "last_name": last}


def add_locale(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "locale": "en"}


def make_registry() -> SchemaRegistry:
    registry = SchemaRegistry()
    for model in (Noted, ProfileV1, ProfileV2, ProfileV3):
        registry.register(model)
    registry.register_upcaster("ProfileUpdated", 1, split_name)
    registry.register_upcaster("ProfileUpdated", 2, add_locale)
    return registry
