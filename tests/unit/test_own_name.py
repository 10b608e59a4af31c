"""The user's own name in a question is read as "the user" (projections/own_name.py)."""

from __future__ import annotations

import pytest

from projections.own_name import about_the_user, name_words


def test_name_words_are_distinct_longest_first_and_skip_initials() -> None:
    assert name_words(["Tan Mei Ling", "Mei", "J Smith"]) == ("Smith", "Ling", "Mei", "Tan")
    assert name_words([]) == ()


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("Where does Tomás live?", "Where does the user live?"),
        ("What is Tomás's job?", "What is the user's job?"),
        ("Tomás's sister: where is she?", "The user's sister: where is she?"),
        ("Which estate does Tan Mei Ling live in?", "Which estate does the user live in?"),
        ("Does Mei eat beef?", "Does the user eat beef?"),
    ],
)
def test_the_name_becomes_the_user(question: str, asked: str) -> None:
    assert about_the_user(question, name_words(["Tomás", "Tan Mei Ling"])) == asked


@pytest.mark.parametrize(
    "question",
    [
        "What does Tomasz do?",  # another name that starts like it
        "Is tomás a good cook?",  # as written: names are matched case and all
        "Where does her brother live?",  # no name at all
    ],
)
def test_other_words_are_left_alone(question: str) -> None:
    assert about_the_user(question, ("Tomás",)) == question


def test_without_a_name_the_question_is_searched_as_asked() -> None:
    assert about_the_user("Where does Tomás live?", ()) == "Where does Tomás live?"
