"""Declaring a projection: its name, code version, read-model tables and handlers.

A projection is data, in the registry style of cosmicpython's ``EVENT_HANDLERS``::

    MEMORIES = Projection.declare(
        "memories", version=1, tables=("memories",), ddl=DDL,
        handlers={MemoryCreated: on_memory_created, MemoryRetracted: on_memory_retracted},
    )

Handlers are deterministic: they read only the event and write only the read model through
the connection they are given (no clock, no randomness, no network). They must tolerate
duplicates and disorder by themselves only where the runner cannot help: the runner already
skips an event a version has applied (by event id); handlers guard per-entity state with the
stream version so that an older event arriving late cannot undo a newer one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from eventstore import EventPayload, RecordedEvent
from eventstore.postgres import Connection
from projections.errors import UnknownProjection
from projections.partitioning import check_partitions

READ_SCHEMA = "memsaga_read"
"""PostgreSQL schema of the read models: ``<table>_v<N>`` tables and ``<table>`` views."""


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


class Tables(Mapping[str, str]):
    """Qualified physical table names of one read-model version, by logical name."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)

    def __getitem__(self, logical: str) -> str:
        return self._names[logical]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


Executor = asyncpg.Pool | Connection
"""Where a bookkeeping statement runs: a pool (a statement of its own) or the caller's connection."""

Handler = Callable[[Connection, Tables, RecordedEvent], Awaitable[None]]
"""``async def on_x(conn, tables, event)``: apply one event to the read model."""

BatchHandler = Callable[[Connection, Tables, Sequence[RecordedEvent]], Awaitable[None]]
"""``async def on_xs(conn, tables, events)``: apply a run of events, in order, with exactly the
effect of each type's :data:`Handler` applied to each in turn, in fewer round trips (e.g. one
``executemany``). One function given for several types gets runs that mix them. Optional: a type
without one is applied event by event."""

P = TypeVar("P", bound=EventPayload)


def payload_of(event: RecordedEvent, model: type[P]) -> P:
    """The event's payload as its model (the event was upcast to the current version on read)."""
    return model.model_validate(event.payload)


@dataclass(frozen=True)
class Projection:
    """A read model and the handlers that build it from events.

    ``version`` is the version of the code (handlers and DDL): bump it when either changes,
    and ``memsaga project run`` with the new code builds a new read model beside the live one,
    then switches to it (docs/evolution.md, Changing a projection).
    ``ddl`` creates the tables; each ``{table}`` placeholder becomes the physical name.
    ``extensions`` are PostgreSQL extensions the DDL needs (created before it, when available).
    ``partitions`` is how many partitions by user a first build gets (1 to 64; a runner may ask
    for another count, which builds a new version: docs/deploy.md, Projection runners).
    """

    name: str
    version: int
    tables: tuple[str, ...]
    ddl: str
    handlers: Mapping[str, Handler]
    description: str = ""
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    partitions: int = 1
    event_types: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"projection names are lower_snake identifiers, not {self.name!r}")
        if unmatched := set(self.batch_handlers) - set(self.handlers):
            raise ValueError(f"batch handlers need a handler for the same type: {sorted(unmatched)}")
        check_partitions(self.partitions)
        object.__setattr__(self, "event_types", tuple(sorted(self.handlers)))

    @classmethod
    def declare(
        cls,
        name: str,
        *,
        version: int,
        tables: tuple[str, ...],
        ddl: str,
        handlers: Mapping[type[EventPayload], Handler],
        batch_handlers: Mapping[type[EventPayload], BatchHandler] | None = None,
        extensions: tuple[str, ...] = (),
        description: str = "",
        partitions: int = 1,
    ) -> Projection:
        """A projection whose handlers are keyed by payload model (their event types are used)."""
        return cls(
            name=name,
            version=version,
            tables=tables,
            ddl=ddl,
            handlers={model.event_type: handler for model, handler in handlers.items()},
            batch_handlers={model.event_type: fn for model, fn in (batch_handlers or {}).items()},
            extensions=extensions,
            description=description,
            partitions=partitions,
        )

    def tables_at(self, version: int) -> Tables:
        """Physical names of this projection's tables at read-model ``version``."""
        return Tables({t: f"{READ_SCHEMA}.{quote_ident(f'{t}_v{version}')}" for t in self.tables})

    def views(self) -> Tables:
        """Names of the views readers query (always on the active version)."""
        return Tables({t: f"{READ_SCHEMA}.{quote_ident(t)}" for t in self.tables})

    def ddl_at(self, version: int) -> str:
        """The DDL that creates the tables of ``version``."""
        sql = self.ddl
        for logical, physical in self.tables_at(version).items():
            sql = sql.replace("{" + logical + "}", physical)
        return sql

    @property
    def durable_name(self) -> str:
        """Name of the projection's durable JetStream consumer (unpartitioned)."""
        return f"proj-{self.name}"

    def partition_durable(self, partition: int, partitions: int) -> str:
        """Name of the durable consumer of one partition (the unpartitioned one when ``partitions`` is 1)."""
        return self.durable_name if partitions == 1 else f"proj-{self.name}-p{partitions}-{partition}"


def find_projection(projections: Mapping[str, Projection], name: str) -> Projection:
    """The projection named ``name``. :raises UnknownProjection: there is none."""
    try:
        return projections[name]
    except KeyError:
        raise UnknownProjection(name, list(projections)) from None


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,
    TimeoutError,
)
"""Failures of the infrastructure, not of a handler: the batch is retried, nothing is parked."""
