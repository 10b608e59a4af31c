"""Slots, values, polarity and stated dates of the rule extractor's candidates (issue 14)."""

from __future__ import annotations

import pytest

from sagas.memory_extraction.events import Candidate
from sagas.memory_extraction.extractors import rule_candidates
from sagas.memory_extraction.rules import RULES, about_someone, occupation, place, relation_key, thing
from sagas.memory_extraction.world_time import is_stated_date


def facts(text: str) -> list[tuple[str, str | None, str | None, str, str | None]]:
    return [(c.text, c.slot, c.value, c.polarity, c.valid_from) for c in rule_candidates(text)]


def one(text: str) -> Candidate:
    [candidate] = rule_candidates(text)
    return candidate


def test_two_wordings_of_one_taste_are_one_fact() -> None:
    love, enjoy = one("I love hiking."), one("I really enjoy hiking!")

    assert love.text != enjoy.text
    assert (love.slot, love.value) == (enjoy.slot, enjoy.value) == ("preference:hiking", "positive")
    assert (one("I can't stand hiking.").slot, one("I can't stand hiking.").value) == (
        "preference:hiking",
        "negative",
    )


def test_a_correction_ends_the_old_place_and_starts_the_new_one() -> None:
    assert facts("Actually, I moved from Lisbon to Berlin.") == [
        ("User moved to Berlin", "residence", "Berlin", "holds", None),
        ("User no longer lives in Lisbon", "residence", "Lisbon", "ended", None),
    ]
    assert facts("I moved from Lisbon to Berlin in May 2024.") == [
        ("User moved to Berlin in May 2024", "residence", "Berlin", "holds", "2024-05"),
        ("User no longer lives in Lisbon", "residence", "Lisbon", "ended", "2024-05"),
    ]


@pytest.mark.parametrize(
    ("said", "memory", "slot", "value"),
    [
        ("I don't live in Lisbon anymore.", "User no longer lives in Lisbon", "residence", "Lisbon"),
        ("I no longer live in Lisbon.", "User no longer lives in Lisbon", "residence", "Lisbon"),
        ("I'm not living in Lisbon now.", "User no longer lives in Lisbon", "residence", "Lisbon"),
        ("I no longer work at IKEA.", "User no longer works at IKEA", "employer", "IKEA"),
        ("I don't work for Amazon anymore.", "User no longer works for Amazon", "employer", "Amazon"),
        ("I left Google.", "User left Google", "employer", "Google"),
        ("I quit my job at Accenture.", "User quit their job at Accenture", "employer", "Accenture"),
        ("I'm not vegetarian anymore.", "User is no longer vegetarian", "diet", "vegetarian"),
        ("I'm no longer a nurse.", "User is no longer a nurse", "job_title", "nurse"),
        ("I no longer drink coffee.", "User no longer drinks coffee", "preference:coffee", None),
        ("I don't eat meat anymore.", "User no longer eats meat", "preference:meat", None),
        ("I stopped drinking coffee.", "User no longer drinks coffee", "preference:coffee", None),
        ("I gave up sugar.", "User no longer eats sugar", "preference:sugar", None),
    ],
)
def test_statements_that_something_ended(said: str, memory: str, slot: str, value: str | None) -> None:
    assert facts(said) == [(memory, slot, value, "ended", None)]


def test_not_without_a_change_is_no_ending() -> None:
    assert facts("I'm not a morning person anymore.") == []  # no occupation: not a job that ended
    assert facts("I don't eat meat.") == [
        ("User does not eat meat", "preference:meat", "negative", "holds", None)
    ]


@pytest.mark.parametrize(
    ("said", "slot", "value"),
    [
        ("I work as a nurse.", "job_title", "nurse"),
        ("I'm a senior software engineer at Spotify.", "job_title", "senior software engineer"),
        ("I work at Siemens in Munich.", "employer", "Siemens"),
        ("I'm working for the BBC now.", "employer", "the BBC"),
        ("I joined Spotify last year.", "employer", "Spotify"),
        ("My name is Ana Costa.", "name", "Ana Costa"),
        ("I'm 34.", "age", "34"),
        ("My birthday is on 3 March.", "birthday", "--03-03"),
        ("My birthday is March 3rd.", "birthday", "--03-03"),
        ("I'm vegan.", "diet", "vegan"),
        ("My favorite colour is blue.", "favourite:colour", "blue"),
        ("I'm a huge fan of the Beatles.", "preference:beatles", "positive"),
        ("I live in Utrecht, near the station.", "residence", "Utrecht"),
        ("I'm based in Glasgow.", "residence", "Glasgow"),
    ],
)
def test_the_users_own_slots(said: str, slot: str, value: str) -> None:
    assert (one(said).slot, one(said).value, one(said).polarity) == (slot, value, "holds")


@pytest.mark.parametrize(
    "said",
    ["I'm a morning person.", "I live with my partner.", "I'm allergic to peanuts.", "I have two kids."],
)
def test_other_facts_have_no_slot(said: str) -> None:
    assert one(said).slot is None and one(said).value is None


@pytest.mark.parametrize(
    ("said", "slot", "value"),
    [
        ("Maria is my wife.", "relation:wife", "Maria"),
        ("My wife is named Maria.", "relation:wife", "Maria"),
        ("My wife's name is Maria.", "relation:wife", "Maria"),
        ("My wife is Maria.", "relation:wife", "Maria"),
        ("I'm married to Maria.", "relation:spouse", "Maria"),
        ("My sister Ana is a nurse.", "relation:sister:Ana:job_title", "nurse"),
        ("I have a sister named Ana.", "relation:sister:Ana", "Ana"),
        ("My mom Linda lives in Faro.", "relation:mother:Linda:residence", "Faro"),
        ("My brother Tom works at Google.", "relation:brother:Tom:employer", "Google"),
        ("My ex-wife Maria lives in Porto.", "relation:ex-wife:Maria:residence", "Porto"),
        ("My wife Joana is 41.", "relation:wife:Joana:age", "41"),
    ],
)
def test_relatives_slots(said: str, slot: str, value: str) -> None:
    assert (one(said).slot, one(said).value) == (slot, value)


def test_he_and_she_are_the_one_named_relative_that_fits() -> None:
    assert facts("My brother Tom is a doctor. He lives in Porto.")[1] == (
        "User's brother Tom lives in Porto", "relation:brother:Tom:residence", "Porto", "holds", None,
    )  # fmt: skip
    # Ana is the only "she"; Tom and Ana would both be a "he or she" friend.
    said = "My sister Ana lives in Porto. My brother Tom lives in Faro. She is a dentist. He is a pilot."
    assert [text for text, *_ in facts(said)][2:] == [
        "User's sister Ana is a dentist",
        "User's brother Tom is a pilot",
    ]
    assert len(facts("My friend Sam lives in Porto. My friend Alex lives in Faro. He is a pilot.")) == 2
    assert facts("He lives in Porto.") == []  # nobody named before


def test_about_someone_rewrites_only_an_unambiguous_reference() -> None:
    people = [("older brother", "Tom"), ("sister", "Ana")]

    assert about_someone("He's a doctor", people) == "my older brother Tom is a doctor"
    assert about_someone("Ana lives in Porto", people) == "my sister Ana lives in Porto"
    assert about_someone("They live in Porto", people) is None
    assert about_someone("She lives in Porto", [("sister", "Ana"), ("mother", "Rita")]) is None


@pytest.mark.parametrize(
    ("said", "valid_from"),
    [
        ("I moved to Lisbon in May 2024.", "2024-05"),
        ("I moved to Lisbon in May.", "--05"),
        ("I started a new job at Siemens on 3 March 2024.", "2024-03-03"),
        ("I joined Spotify on 3 March.", "--03-03"),
        ("I was born on 3/14/1990.", "1990-03-14"),
        ("I moved to Oslo on 2024-03-03.", "2024-03-03"),
        ("I've been living in Berlin since 2019.", "2019"),
        ("I moved to Lisbon last year.", None),
        ("I moved to Lisbon two years ago.", None),
        ("I'm moving to Berlin in June.", None),  # a plan: not true yet
        ("My birthday is on 3 March.", None),  # the date is the value, not a change
    ],
)
def test_valid_from_is_the_date_the_clause_states(said: str, valid_from: str | None) -> None:
    candidate = one(said)

    assert candidate.valid_from == valid_from
    assert valid_from is None or is_stated_date(valid_from)


def test_a_relative_date_stays_in_the_attributes() -> None:
    candidate = one("I moved to Lisbon last year.")

    assert candidate.valid_from is None and candidate.attributes == {"when": "last year"}


def test_slot_parts() -> None:
    assert thing("the Beatles") == "beatles" and thing("tea to coffee", "prefer") == "tea"
    assert place("a small flat in Kreuzberg") == "Kreuzberg" and place("Faro in March") == "Faro"
    assert (
        occupation("a senior nurse at Santa Maria") == "senior nurse"
        and occupation("a morning person") is None
    )
    assert relation_key("mum") == "mother" and relation_key("wife", "ex-") == "ex-wife"


def test_every_rule_with_a_value_has_a_slot() -> None:
    assert all(rule.slot is not None for rule in RULES if rule.value is not None)
    assert all(rule.polarity in ("holds", "ended") for rule in RULES)
