"""Sealing and opening personal data: event fields at append and read, and users' blobs.

The :class:`Vault` joins the schema registry (which fields are personal) and the key ring
(whose key). The event store seals at append and opens its rows as it decodes them
(:meth:`Vault.decode_rows`); a reader of raw events (the relay, a projection fed by JetStream)
opens them with :meth:`Vault.open_events` where it needs the plain text, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore.codec import Sealer
from eventstore.columns import EVENT_ID, SEALED_COLUMN, USER_ID, decode_opened_row, decode_row, load_json
from eventstore.encryption import (
    ERASED_FLAG,
    SEALED,
    SEALED_VALUES,
    DataKey,
    erase,
    open_event,
    open_payload,
    seal_event,
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
        # Per registered (type, version): a model, once registered, is never replaced.
        self._paths: dict[tuple[str, int], tuple[PersonalField, ...]] = {}

    def paths(self, event_type: str, event_version: int) -> tuple[PersonalField, ...]:
        """The personal fields of one registered version (none for an unknown type)."""
        found = self._paths.get((event_type, event_version))
        if found is not None:
            return found
        model = self.registry.model_for(event_type, event_version)
        if model is None:
            return ()
        found = self._paths[(event_type, event_version)] = personal_paths(model)
        return found

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
        paths = self.paths
        personal = [e for e in events if paths(e.event_type, e.event_version)]
        if not personal:
            return None
        for event in personal:
            if not event.user_id:
                raise InvalidEvent(
                    f"event {event.event_id} ({event.event_type}) holds personal fields but no user_id:"
                    " personal data is encrypted with its user's key, so name the user"
                )
        keys = await self.keyring.keys_for_write({e.user_id for e in personal if e.user_id})

        def seal(event: NewEvent, payload: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
            fields = paths(event.event_type, event.event_version)
            if not fields or event.user_id is None:
                return None
            return seal_event(payload, fields, keys[event.user_id], event.event_id)

        return seal

    async def decode_rows(self, rows: Sequence[Any]) -> list[RecordedEvent]:
        """Rows of ``memsaga.events`` (in :data:`~eventstore.columns.COLUMNS` order) decoded and
        opened, what the store's reads return: a sealed row is decrypted and its plain payload
        parsed in place of the redacted column (one parse per event, as for a plain row); every
        row of a forgotten user reads as :meth:`open_events` says.

        :raises SealedDataCorrupt: a sealed row does not open with its user's key.
        """
        users = {r[USER_ID] for r in rows if r[USER_ID]}
        if not users:
            return [decode_row(r, self.registry) for r in rows]
        # Every user's key, sealed rows or not: all events of a forgotten user read erased.
        keys = await self.keyring.keys_for_read(users)
        registry, events = self.registry, []
        for row in rows:
            user = row[USER_ID]
            key = keys.get(user)
            sealed = row[SEALED_COLUMN]
            if sealed is not None and key is not None:
                plain = open_event(bytes(sealed), key, row[EVENT_ID])
                events.append(decode_opened_row(row, registry, plain))
                continue
            event = decode_row(row, registry)
            if key is None and (user in keys or sealed is not None):  # forgotten, or no key at all
                event = self._erased(event)
            elif SEALED_VALUES in event.payload:  # the first layout: opened in place (a fresh read)
                open_payload(event.payload, key, event.event_id, in_place=True)
            events.append(event)
        return events

    async def open_events(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """Raw ``events`` (as the tail or JetStream carry them) with their personal fields opened:
        a sealed event's payload is its decrypted plain payload, upcast, and ``sealed`` None (its
        metadata still says it was sealed). Every event of a forgotten user (its key destroyed)
        is marked :data:`~eventstore.encryption.ERASED_FLAG` in its metadata and its personal
        fields read :data:`~eventstore.encryption.ERASED`. Other events are returned as they are;
        the given events are not changed, and opening twice changes nothing.

        :raises SealedDataCorrupt: a sealed event does not open with its user's key.
        """
        users = {e.user_id for e in events if e.user_id}
        if not users:
            return events
        keys = await self.keyring.keys_for_read(users)
        forgotten = {u for u, k in keys.items() if k is None}
        if not forgotten and not any(SEALED in e.metadata for e in events):
            return events
        result = []
        for event in events:
            key = keys.get(event.user_id or "")
            if event.user_id in forgotten or (event.sealed is not None and key is None):
                result.append(self._erased(event))
            elif event.sealed is not None and key is not None:
                result.append(self._opened(event, key))
            elif SEALED in event.metadata and SEALED_VALUES in event.payload:
                payload = open_payload(event.payload, key, event.event_id)
                result.append(RecordedEvent.trusted({**event.__dict__, "payload": payload}))
            else:
                result.append(event)
        return result

    def _opened(self, event: RecordedEvent, key: DataKey) -> RecordedEvent:
        assert event.sealed is not None
        plain = load_json(open_event(event.sealed, key, event.event_id))
        version, payload = self.registry.upcast(event.event_type, event.stored_version, plain)
        fields = {**event.__dict__, "event_version": version, "payload": payload, "sealed": None}
        return RecordedEvent.trusted(fields)

    def _erased(self, event: RecordedEvent) -> RecordedEvent:
        """``event`` as read once its user's key is destroyed: personal values :data:`ERASED`, no
        ciphertext, marked in its metadata; a raw sealed event (not upcast yet) is upcast."""
        if ERASED_FLAG in event.metadata and event.sealed is None:
            return event
        version, payload = event.event_version, erase(event.payload)
        if event.sealed is not None:
            version, payload = self.registry.upcast(event.event_type, event.stored_version, payload)
        metadata = {**event.metadata, ERASED_FLAG: True}
        changed = {"event_version": version, "payload": payload, "metadata": metadata, "sealed": None}
        fields = {**event.__dict__, **changed}
        return RecordedEvent.trusted(fields)
