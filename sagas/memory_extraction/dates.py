"""Dates stated in a statement, as ISO 8601 at the precision stated (a candidate's ``valid_from``).

``in May 2024`` -> ``2024-05``; ``in May`` -> ``--05``; ``on 3 March 2024`` / ``March 3, 2024``
-> ``2024-03-03``; ``on 3 March`` -> ``--03-03``; ``3/14/1990`` -> ``1990-03-14`` (month/day/year,
or day/month/year when the first number is over 12); ``14.02.2022`` (day.month.year);
``2024-03-03``; ``in 2019`` / ``since 2019`` -> ``2019``. Relative dates (``last year``,
``two years ago``, ``next month``) are no stated date: ``None``. Every value returned satisfies
:func:`sagas.memory_extraction.world_time.is_stated_date`, which resolves it later against
the episode's time. Pure: no clock.
"""

from __future__ import annotations

import re

from sagas.memory_extraction.world_time import is_stated_date

MONTH_NUMBERS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
"""Month names and their usual abbreviations."""

_MONTH = r"(?P<{}>" + "|".join(sorted(MONTH_NUMBERS, key=len, reverse=True)) + r")"
_DAY = r"(?P<{}>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<{}>(?:19|20)\d{{2}})"
_PERIOD = (
    r"(?:(?:early|late|mid-?|the (?:start|beginning|end|middle) of"
    r"|(?:the )?(?:summer|winter|spring|autumn|fall)(?: of)?) ?)?"
)
_AFTER = r"(?:in|since|from|of|during|around)"
_MONTH_NAME = (
    r"(?P<{}>january|february|march|april|may|june|july|august|september|sept|october|november|december)"
)

# Most precise first: at one position the first alternative that matches wins, and every
# alternative may start with the preposition, so "in May 2024" is not read as "in May".
_STATED = re.compile(
    rf"\b(?:(?:{_AFTER}|on) {_PERIOD})?(?:"
    + "|".join(
        [
            r"(?P<iso_y>(?:19|20)\d{2})-(?P<iso_m>\d{2})-(?P<iso_d>\d{2})",
            r"(?P<n1>\d{1,2})/(?P<n2>\d{1,2})/(?P<n_y>(?:19|20)\d{2})",
            r"(?P<e_d>\d{1,2})\.(?P<e_m>\d{1,2})\.(?P<e_y>(?:19|20)\d{2})",
            _DAY.format("dmy_d") + r"(?: of)? " + _MONTH.format("dmy_m") + r",? " + _YEAR.format("dmy_y"),
            _MONTH.format("mdy_m") + r" " + _DAY.format("mdy_d") + r",? " + _YEAR.format("mdy_y"),
            _MONTH.format("my_m") + r",? " + _YEAR.format("my_y"),
            _DAY.format("dm_d") + r"(?: of)? " + _MONTH.format("dm_m"),
            _MONTH.format("md_m") + r" " + _DAY.format("md_d") + r"(?!\d|:| ?(?:am|pm|years?|days?)\b)",
            rf"{_AFTER} {_PERIOD}" + _MONTH_NAME.format("m_m"),
            rf"{_AFTER} {_PERIOD}" + _YEAR.format("y_y"),
        ]
    )
    + r")\b",
    re.IGNORECASE,
)


def _month(name: str) -> int:
    return MONTH_NUMBERS[name.lower()]


def _iso(year: int | None, month: int | None = None, day: int | None = None) -> str:
    if year is None:
        return f"--{month:02d}" + (f"-{day:02d}" if day is not None else "")
    return (
        f"{year:04d}"
        + (f"-{month:02d}" if month is not None else "")
        + (f"-{day:02d}" if day is not None else "")
    )


def _value(match: re.Match[str]) -> str:
    g = match.groupdict()
    if g["iso_y"]:
        return _iso(int(g["iso_y"]), int(g["iso_m"]), int(g["iso_d"]))
    if g["n1"]:
        first, second = int(g["n1"]), int(g["n2"])
        month, day = (second, first) if first > 12 else (first, second)
        return _iso(int(g["n_y"]), month, day)
    if g["e_d"]:
        return _iso(int(g["e_y"]), int(g["e_m"]), int(g["e_d"]))
    if g["dmy_d"]:
        return _iso(int(g["dmy_y"]), _month(g["dmy_m"]), int(g["dmy_d"]))
    if g["mdy_m"]:
        return _iso(int(g["mdy_y"]), _month(g["mdy_m"]), int(g["mdy_d"]))
    if g["my_m"]:
        return _iso(int(g["my_y"]), _month(g["my_m"]))
    if g["dm_d"]:
        return _iso(None, _month(g["dm_m"]), int(g["dm_d"]))
    if g["md_m"]:
        return _iso(None, _month(g["md_m"]), int(g["md_d"]))
    if g["m_m"]:
        return _iso(None, _month(g["m_m"]))
    return _iso(int(g["y_y"]))


def stated_date(text: str) -> str | None:
    """The first calendar date ``text`` states, ISO 8601 at its precision; None when it states none.

    >>> stated_date("I moved to Lisbon in May 2024"), stated_date("I joined Google last year")
    ('2024-05', None)
    """
    for match in _STATED.finditer(text):
        value = _value(match)
        if is_stated_date(value):
            return value
    return None


def month_day(stated: str | None) -> str | None:
    """The yearless ``--MM-DD`` of a stated day (``1990-03-14`` -> ``--03-14``); None without a day."""
    if stated is None:
        return None
    if len(stated) == 10 and stated[4] == "-":
        return "--" + stated[5:]
    if len(stated) == 7 and stated.startswith("--"):
        return stated
    return None
