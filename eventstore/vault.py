"""Sealing and opening personal data: event fields at append and read, and users' blobs.

The :class:`Vault` joins the schema registry (which fields are personal) and the key ring
(whose key). The event store seals at append and opens on its reads; a reader of raw events
(the relay, a projection fed by JetStream) opens them with :meth:`Vault.open_events` where it
needs the plain text, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore.codec import Sealer
from eventstore.encryption import (
    ERASED_FLAG,
    SEALED,
    SEALED_VALUES,
    open_payload,
    seal_payload,
)
from eventstore.envelope import NewEvent, RecordedEvent
from eventstore.errors import InvalidEvent
from eventstore.keys import KeyRing
from eventstore.personal import PersonalField, personal_paths
from eventstore.registry import SchemaRegistry


class Vault:
    """Seals and opens personal data with each user's key from ``keyring``."""

    def __init__(self, registry: SchemaRegistry, keyring: KeyRing) -> None:
        self.registry = registry
        self.keyring = keyring

    def paths(self, event_type: str, event_version: int) -> tuple[PersonalField, ...]:
        """The personal fields of one registered version (none for an unknown type)."""
        model = self.registry.model_for(event_type, event_version)
        return () if model is None else personal_paths(model)

    def indexed(self, event_type: str, field: str) -> bool:
        """Whether ``field`` (top level) of some version of ``event_type`` is sealed with a blind index."""
        return any(
            f.indexed and f.path == (field,)
            for version in self.registry.versions(event_type)
            for f in self.paths(event_type, version)
        )

    async def blind_indexes(self, user_id: str, values: Sequence[str]) -> list[str]:
        """``values``' blind indexes under ``user_id``'s key (none when it has no live key)."""
        key = (await self.keyring.keys_for_read([user_id])).get(user_id)
        return [] if key is None else [key.blind_index(v) for v in values]

    async def sealer(self, events: Sequence[NewEvent]) -> Sealer | None:
        """What seals ``events``' personal fields at append, or None when they have none.

        :raises InvalidEvent: an event with personal fields names no user.
        :raises UserWasForgotten: a user's key was destroyed.
        """
        personal = [e for e in events if self.paths(e.event_type, e.event_version)]
        if not personal:
            return None
        anonymous = [e for e in personal if not e.user_id]
        if anonymous:
            event = anonymous[0]
            raise InvalidEvent(
                f"event {event.event_id} ({event.event_type}) holds personal fields but no user_id:"
                " personal data is encrypted with its user's key, so name the user"
            )
        keys = await self.keyring.keys_for_write(e.user_id for e in personal if e.user_id)

        def seal(event: NewEvent, payload: dict[str, Any]) -> dict[str, Any] | None:
            paths = self.paths(event.event_type, event.event_version)
            if not paths or event.user_id is None:
                return None
            return seal_payload(payload, paths, keys[event.user_id], event.event_id)

        return seal

    async def open_events(self, events: list[RecordedEvent], *, fresh: bool = False) -> list[RecordedEvent]:
        """``events`` with sealed fields opened (their metadata still says they were sealed); every
        event of a forgotten user (its key destroyed) is marked
        :data:`~eventstore.encryption.ERASED_FLAG` in its metadata and its sealed fields read
        :data:`~eventstore.encryption.ERASED`. Others are returned as they are; opening twice
        changes nothing.

        ``fresh``: the events were just decoded and nobody else holds them, so they are opened in
        place instead of copied (the store's own reads); otherwise the given events stay sealed.
        """
        users = {e.user_id for e in events if e.user_id}
        if not users:
            return events
        keys = await self.keyring.keys_for_read(users)
        forgotten = {u for u, k in keys.items() if k is None}
        if not forgotten and not any(SEALED in e.metadata for e in events):
            return events
        result = []
        trusted = RecordedEvent.trusted
        for event in events:
            if event.user_id in forgotten:
                payload = open_payload(event.payload, None, event.event_id)
                metadata = {**event.metadata, ERASED_FLAG: True}
                result.append(trusted({**event.__dict__, "payload": payload, "metadata": metadata}))
            elif SEALED in event.metadata and SEALED_VALUES in event.payload:
                key = keys.get(event.user_id or "")
                payload = open_payload(event.payload, key, event.event_id, in_place=fresh)
                if fresh:
                    result.append(event)
                else:
                    result.append(trusted({**event.__dict__, "payload": payload}))
            else:
                result.append(event)
        return result
