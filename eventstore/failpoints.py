"""Named failpoints: faults injected at the dangerous lines, off unless ``MEMSAGA_FAILPOINTS`` names them.

``MEMSAGA_FAILPOINTS="name=action[@N][,name2=action2[@N]...]"`` where action is one of

* ``kill``: SIGKILL the own process, no cleanup (as ``kill -9``);
* ``raise``: raise :class:`FailpointTriggered` (in an activity: a permanent error, the step fails);
* ``delay:MS``: sleep MS milliseconds (``asyncio.sleep`` in async code);
* ``on``: a flag failpoint (:func:`enabled`) answers True;

and ``@N`` triggers on the N-th hit only (hits are counted per process), ``@every`` on every hit;
without it, on the first hit. The names are :data:`FAILPOINTS`; docs/reliability.md has the table.

The composition root parses the variable once, at process start (:func:`install`): a bad spec
is an :class:`InvalidFailpoints` then, never later. Nothing is active unless installed, and a
hit on an inactive name is one dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

ENV_VAR = "MEMSAGA_FAILPOINTS"

FailpointName = Literal[
    "relay.before_publish",
    "relay.after_publish",
    "projector.after_commit",
    "projector.deliver_twice",
    "activity.after_append",
    "compensation.after_first",
]

FAILPOINTS: dict[str, str] = {
    "relay.before_publish": "the relay read a batch and has not published it",
    "relay.after_publish": "JetStream acknowledged the relay's batches; their checkpoint has not moved",
    "projector.after_commit": "a runner committed a batch (read model, checkpoint); it has not acked it",
    "projector.deliver_twice": "flag: a runner applies every batch a second time, as a redelivery would",
    "activity.after_append": "an activity's appends are committed; Temporal has not heard of its result",
    "compensation.after_first": "a compensating event is appended; the rest of the compensation is not",
}
"""Every failpoint and the moment it stands for (its placement is in docs/reliability.md)."""

FLAGS = frozenset({"projector.deliver_twice"})
"""Failpoints asked with :func:`enabled`: they take only ``on``."""

Action = Literal["kill", "raise", "delay", "on"]


class InvalidFailpoints(ValueError):
    """``MEMSAGA_FAILPOINTS`` does not parse; the message says which entry and why."""


class FailpointTriggered(Exception):
    """A ``raise`` failpoint was hit."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"failpoint {name} triggered ({ENV_VAR})")


@dataclass
class _Point:
    name: str
    action: Action
    at: int | None  # the hit that triggers; None: every hit
    delay_seconds: float = 0.0
    hits: int = 0

    def due(self) -> bool:
        self.hits += 1
        due = self.at is None or self.hits == self.at
        if due:
            level = logging.DEBUG if self.at is None else logging.WARNING
            log.log(level, "failpoint %s: %s (hit %d)", self.name, self.action, self.hits)
        return due

    def fire(self) -> None:
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            os._exit(137)  # not reached: SIGKILL to oneself is delivered before kill() returns
        if self.action == "raise":
            raise FailpointTriggered(self.name)


_points: dict[str, _Point] = {}


def parse(spec: str) -> dict[str, _Point]:
    """The failpoints of a ``MEMSAGA_FAILPOINTS`` value (empty: none).

    :raises InvalidFailpoints: an entry is malformed, names an unknown failpoint or repeats one.
    """
    points: dict[str, _Point] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        point = _parse_entry(entry)
        if point.name in points:
            raise InvalidFailpoints(f"{point.name} is named twice")
        points[point.name] = point
    return points


def _parse_entry(entry: str) -> _Point:
    name, equals, rest = entry.partition("=")
    name = name.strip()
    if not equals:
        raise InvalidFailpoints(f"{entry!r}: expected name=action[@N] (a flag: {entry}=on@every)")
    if name not in FAILPOINTS:
        raise InvalidFailpoints(f"unknown failpoint {name!r}: one of {', '.join(FAILPOINTS)}")
    action, _, when = rest.strip().partition("@")
    at = _parse_when(entry, when.strip()) if when else 1
    kind, _, argument = action.strip().partition(":")
    allowed = ("on",) if name in FLAGS else ("kill", "raise", "delay")
    if kind not in allowed:
        raise InvalidFailpoints(f"{entry!r}: {name} takes {' | '.join(allowed)}, not {kind!r}")
    if kind == "delay":
        return _Point(name, "delay", at, _parse_delay(entry, argument))
    if argument:
        raise InvalidFailpoints(f"{entry!r}: {kind} takes no argument")
    return _Point(name, "on" if kind == "on" else "kill" if kind == "kill" else "raise", at)


def _parse_when(entry: str, when: str) -> int | None:
    if when == "every":
        return None
    if when.isdigit() and int(when) >= 1:
        return int(when)
    raise InvalidFailpoints(f"{entry!r}: @{when} must be @N (N >= 1, the N-th hit) or @every")


def _parse_delay(entry: str, argument: str) -> float:
    try:
        milliseconds = float(argument)
    except ValueError:
        raise InvalidFailpoints(f"{entry!r}: delay takes milliseconds, as delay:500") from None
    if not milliseconds >= 0:
        raise InvalidFailpoints(f"{entry!r}: a delay cannot be negative")
    return milliseconds / 1000


def install(spec: str | None) -> None:
    """Activate the failpoints of ``spec`` (a ``MEMSAGA_FAILPOINTS`` value), replacing any before;
    ``None`` or empty turns them all off. :raises InvalidFailpoints: see :func:`parse`."""
    global _points
    _points = parse(spec or "")


def install_from_environment(environ: Mapping[str, str] = os.environ) -> None:
    """:func:`install` the value of ``MEMSAGA_FAILPOINTS``. :raises InvalidFailpoints: see :func:`parse`."""
    install(environ.get(ENV_VAR))


def hit(name: FailpointName) -> None:
    """Pass the failpoint ``name`` in sync code: kill, raise or sleep if it is due."""
    point = _points.get(name)
    if point is None or not point.due():
        return
    if point.action == "delay":
        time.sleep(point.delay_seconds)
    point.fire()


def hit_async(name: FailpointName) -> Awaitable[None]:
    """Pass the failpoint ``name`` in async code (``await hit_async(...)``): a delay does not block."""
    point = _points.get(name)
    if point is None or not point.due():
        return _NOTHING
    if point.action == "delay":
        return asyncio.sleep(point.delay_seconds)
    point.fire()
    return _NOTHING


def enabled(name: FailpointName) -> bool:
    """Whether the flag failpoint ``name`` is on at this hit."""
    point = _points.get(name)
    return point is not None and point.due()


class _Nothing:
    """An awaitable that is done at once: what an inactive failpoint returns (no coroutine made)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


_NOTHING = _Nothing()
