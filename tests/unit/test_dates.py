"""Dates stated in a statement (sagas/memory_extraction/dates.py): ISO 8601 at the stated precision."""

from __future__ import annotations

import pytest

from sagas.memory_extraction.dates import month_day, stated_date
from sagas.memory_extraction.world_time import is_stated_date


@pytest.mark.parametrize(
    ("text", "stated"),
    [
        ("I moved to Lisbon in May 2024", "2024-05"),
        ("I moved to Lisbon in May", "--05"),
        ("I started on 3 March 2024", "2024-03-03"),
        ("I started on March 3, 2024", "2024-03-03"),
        ("I was born on the 3rd of March, 1990", "1990-03-03"),
        ("on 3 March", "--03-03"),
        ("My birthday is July 14th", "--07-14"),
        ("born on 3/14/1990", "1990-03-14"),  # month/day/year
        ("born on 3/4/1990", "1990-03-04"),  # month/day when both could be either
        ("moved on 14/3/1990", "1990-03-14"),  # day/month: the first number is over 12
        ("moved on 14.02.2022", "2022-02-14"),
        ("joined on 2024-03-03", "2024-03-03"),
        ("in 2019", "2019"),
        ("since 2019", "2019"),
        ("in early 2020", "2020"),
        ("in the summer of 2019", "2019"),
        ("in May 3, 2024", "2024-05-03"),  # the precise reading wins over "in May"
        ("since March", "--03"),
        ("I turned 30 on 12 June at 3pm", "--06-12"),
    ],
)
def test_a_stated_date_is_iso_at_its_precision(text: str, stated: str) -> None:
    assert stated_date(text) == stated
    assert is_stated_date(stated)


@pytest.mark.parametrize(
    "text",
    [
        "I moved last year",
        "I joined two years ago",
        "next month",
        "I'm 34",
        "I have 2 kids and 3 cats",
        "on 31 February",  # no such day
        "on 13/13/2020",
        "a gift from Jan",  # abbreviations need a day or a year
        "I may go",
        "room 2019b",
    ],
)
def test_relative_dates_and_non_dates_state_none(text: str) -> None:
    assert stated_date(text) is None


def test_the_first_date_of_the_text_is_taken() -> None:
    assert stated_date("I moved to Porto in 2015 and to Faro in 2019") == "2015"


def test_month_day_drops_the_year_and_needs_a_day() -> None:
    assert month_day("1990-03-14") == "--03-14"
    assert month_day("--03-14") == "--03-14"
    assert month_day("1990-03") is None
    assert month_day("--03") is None
    assert month_day(None) is None
