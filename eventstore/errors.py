"""Named errors of the event store. Every refusal leaves the store unchanged."""

from __future__ import annotations

from typing import Any


class EventStoreError(Exception):
    """Base class of every event-store error."""


class WrongExpectedVersion(EventStoreError):
    """The stream is not at the version the caller expected (optimistic concurrency)."""

    def __init__(self, stream_id: str, expected: Any, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}: "
            "re-read the stream, decide again and append with the new version"
        )


class EventIdConflict(EventStoreError):
    """An event id is already stored with a different body: ids must name one fact only."""

    def __init__(self, event_id: Any, field: str) -> None:
        self.event_id = event_id
        self.field = field
        super().__init__(
            f"event {event_id} is already stored with a different {field}: "
            "an event id may be re-sent only with the same content; use a new id for a new fact"
        )


class PartialDuplicate(EventStoreError):
    """Some events of one append are stored already and others are not."""

    def __init__(self, stored: int, total: int) -> None:
        self.stored = stored
        self.total = total
        super().__init__(
            f"{stored} of the {total} events of this append are stored already: "
            "a retried append must re-send exactly the batch it sent before"
        )


class UnknownEventType(EventStoreError):
    """No payload model is registered for this (event type, schema version)."""

    def __init__(self, event_type: str, event_version: int, known: list[int]) -> None:
        self.event_type = event_type
        self.event_version = event_version
        hint = f"registered versions: {known}" if known else "the type is not registered at all"
        super().__init__(
            f"no schema registered for {event_type} v{event_version} ({hint}): "
            "register its payload model in the SchemaRegistry before appending it"
        )


class InvalidPayload(EventStoreError):
    """The payload does not match the model of the version it names."""

    def __init__(self, event_type: str, event_version: int, errors: list[tuple[str, str]]) -> None:
        self.event_type = event_type
        self.event_version = event_version
        self.errors = errors
        self.fields = [field for field, _ in errors]
        detail = "; ".join(f"field {field!r}: {message}" for field, message in errors)
        super().__init__(f"invalid payload for {event_type} v{event_version}: {detail}")


class InvalidEvent(EventStoreError):
    """The envelope itself is malformed (empty ids, naive time, empty batch...)."""


class InvalidQuery(EventStoreError):
    """A read names something the store cannot look up (e.g. a payload field that is no identifier)."""


class PayloadTooLarge(EventStoreError):
    """A payload is over the size limit; big content belongs in the blob store."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.size = size
        self.limit = limit
        super().__init__(
            f"payload of {event_type} is {size} bytes, over the limit of {limit}: store the content "
            "with BlobStore.put(data), which returns its SHA-256, and put that hash in the payload"
        )


class BlobNotFound(EventStoreError):
    """No blob is stored under this hash."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"no blob stored with sha256 {sha256}")


class MigrationError(EventStoreError):
    """A schema migration could not be applied."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration file was edited afterwards: migrations are immutable too."""

    def __init__(self, source: str, version: int, name: str) -> None:
        self.source = source
        self.version = version
        super().__init__(
            f"migration {source}/{name} (version {version}) changed after it was applied: "
            "never edit an applied migration, add a new one instead"
        )


class EncryptionError(EventStoreError):
    """Base class of the errors of personal-data encryption (:mod:`eventstore.encryption`)."""


class DataErased(EncryptionError):
    """The data belongs to a user whose key was destroyed (the user was forgotten)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is erased: its user was forgotten and the key destroyed")


class UserWasForgotten(EncryptionError):
    """New personal data for a user who was forgotten: refused (forgetting is final for an id)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(
            f"user {user_id!r} was forgotten (its data key is destroyed): nothing personal can be"
            " stored for this id any more; use a new user id"
        )


class SealedDataCorrupt(EncryptionError):
    """A sealed value or blob does not open with its user's key (tampered, or another key)."""


class WrongMasterKey(EncryptionError):
    """The configured master key is not the one that wrapped the stored data keys."""

    def __init__(self, configured: str, stored: list[str]) -> None:
        super().__init__(
            f"the master key (id {configured}) did not wrap the stored data keys (key ids"
            f" {', '.join(stored)}): set MEMSAGA_MASTER_KEY or MEMSAGA_MASTER_KEY_FILE to the key in use,"
            " or rotate with `memsaga keys rotate`"
        )
