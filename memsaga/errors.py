"""Errors of the memsaga application layer (CLI, configuration, local stack)."""

from __future__ import annotations


class MemsagaError(Exception):
    """Base class of memsaga's application errors."""


class NotFound(MemsagaError):
    """What a command names (a memory, a saga, a trace) does not exist; the message says how to find it."""


class ServiceNotConfigured(MemsagaError):
    """A service URL is neither in the environment nor in a running local stack."""

    def __init__(self, service: str, variable: str) -> None:
        self.service = service
        self.variable = variable
        super().__init__(
            f"no {service} configured: set {variable}, or start the local stack with `memsaga dev up`"
        )


class DatabaseUnreachable(MemsagaError):
    """PostgreSQL at the configured DSN does not answer or refuses the connection."""

    def __init__(self, dsn: str, cause: Exception) -> None:
        self.dsn = dsn
        super().__init__(f"cannot connect to PostgreSQL at {dsn}: {cause} (is `memsaga dev up` running?)")


class InvalidSettings(MemsagaError):
    """An environment variable holds a value its setting does not accept."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(problems))


class TemporalUnreachable(MemsagaError):
    """The Temporal frontend does not answer."""

    def __init__(self, address: str, cause: Exception) -> None:
        self.address = address
        super().__init__(f"cannot connect to Temporal at {address}: {cause} (is `memsaga dev up` running?)")


class MasterKeyMissing(MemsagaError):
    """No master key is configured: personal data cannot be sealed or opened."""

    def __init__(self, looked_at: str) -> None:
        super().__init__(
            "no master key: set MEMSAGA_MASTER_KEY (base64 of 32 bytes, `memsaga keys new` makes one)"
            f" or MEMSAGA_MASTER_KEY_FILE, or start the local stack (`memsaga dev up` creates {looked_at})"
        )
