"""What can stop a chaos run before its checks (a violation is not an error: it is reported)."""

from __future__ import annotations

from memsaga.errors import MemsagaError


class ChaosError(MemsagaError):
    """The chaos run could not go on."""


class ServiceDidNotComeBack(ChaosError):
    """A service restarted by a fault came back elsewhere (its port was taken), or not at all."""

    def __init__(self, name: str, url: str, found: str | None) -> None:
        self.name = name
        where = f"came back at {found}" if found else "did not come back"
        super().__init__(f"{name} {where}, not at {url}: see its log under the run's directory")


class ChaosStopped(ChaosError):
    """SIGINT or SIGTERM stopped the run before its checks; everything it started is stopped."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        super().__init__(
            "chaos run stopped by a signal before its checks; every process it started is stopped"
            f" (data and logs: {state_dir})"
        )
