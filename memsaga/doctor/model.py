"""What ``memsaga doctor`` reports: checks with a status, what was seen and what to do."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

FORMAT = "memsaga.doctor/v1"


class Status(StrEnum):
    """How one check came out; the order is the severity."""

    OK = "ok"
    WARN = "warn"
    """Worth a look; nothing is lost or stuck because of it."""
    PROBLEM = "problem"
    """Data can be lost, or something is stuck: act on the hint."""
    UNREACHABLE = "unreachable"
    """The service did not answer."""


class Check(BaseModel):
    """One check: its stable name, status, what was seen (``detail``) and what to do (``hint``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    detail: str
    hint: str | None = None


def ok(name: str, detail: str) -> Check:
    """A check that passed."""
    return Check(name=name, status=Status.OK, detail=detail)


def warn(name: str, detail: str, hint: str) -> Check:
    """A check worth a look."""
    return Check(name=name, status=Status.WARN, detail=detail, hint=hint)


def problem(name: str, detail: str, hint: str) -> Check:
    """A check that failed: data can be lost or something is stuck."""
    return Check(name=name, status=Status.PROBLEM, detail=detail, hint=hint)


def unreachable(name: str, detail: str, hint: str) -> Check:
    """A service that did not answer."""
    return Check(name=name, status=Status.UNREACHABLE, detail=detail, hint=hint)


class Report(BaseModel):
    """Every check, in the order run; ``ok`` when none is a problem or unreachable."""

    model_config = ConfigDict(frozen=True)

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """No problem and nothing unreachable (warnings allowed)."""
        return all(c.status in (Status.OK, Status.WARN) for c in self.checks)

    @property
    def worst(self) -> Status:
        """The most severe status of any check."""
        order = list(Status)
        return max((c.status for c in self.checks), key=order.index, default=Status.OK)

    def to_json(self) -> dict[str, object]:
        """The stable ``memsaga.doctor/v1`` shape (docs/reliability.md, *Doctor*)."""
        return {
            "format": FORMAT,
            "ok": self.ok,
            "checks": [c.model_dump(mode="json") for c in self.checks],
        }


def age(seconds: float) -> str:
    """``4.2s``, ``3m 5s``, ``2h 10m``: a duration for a human."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"
