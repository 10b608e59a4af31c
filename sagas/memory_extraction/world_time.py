"""World time of a memory: the date a statement gives, resolved against the episode's time.

A candidate's ``valid_from`` is what its text states, in ISO 8601 at the precision stated:
``2024``, ``2024-05``, ``2024-05-03``, or without a year ``--05`` / ``--05-03`` ("in May",
"on 3 March"). :func:`resolve_valid_from` turns it into a UTC instant (the start of the
period) given the episode's time: a date without a year is the latest such date not after
the episode. Pure and total: a statement that gives no usable date falls back to the episode's
time, so a replay resolves the same and nothing ever fails here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_STATED = re.compile(
    r"^(?:(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?|--(?P<m>\d{2})(?:-(?P<d>\d{2}))?)$"
)


def is_stated_date(value: str) -> bool:
    """Whether ``value`` is a date in the form :mod:`world_time` reads (and a real date)."""
    return _parse(value, datetime(2000, 1, 1, tzinfo=UTC)) is not None


def resolve_valid_from(stated: str | None, episode_time: datetime) -> datetime:
    """The instant a stated date means (UTC, start of its period); ``episode_time`` when none.

    ``episode_time`` must be timezone-aware.
    """
    if stated is None:
        return episode_time
    resolved = _parse(stated, episode_time)
    return episode_time if resolved is None else resolved


def _parse(stated: str, episode_time: datetime) -> datetime | None:
    match = _STATED.match(stated.strip())
    if match is None:
        return None
    try:
        if match["year"] is not None:
            return datetime(int(match["year"]), int(match["month"] or 1), int(match["day"] or 1), tzinfo=UTC)
        month, day = int(match["m"]), int(match["d"] or 1)
        reference = episode_time.astimezone(UTC)
        candidate = datetime(reference.year, month, day, tzinfo=UTC)
        if candidate > reference:
            candidate = datetime(reference.year - 1, month, day, tzinfo=UTC)
        return candidate
    except ValueError:  # 2024-02-30, --13
        return None
