"""The rule-based extractor, the text helpers it stands on, and the http extractor's reply parser."""

from __future__ import annotations

import json

import pytest

from adapters import AdapterNotConfigured, UnknownAdapter, build_extractor
from adapters.http_extractor import (
    MEMORY_SCHEMA,
    SYSTEM_PROMPT,
    ExtractorResponseInvalid,
    HttpExtractor,
    parse_memories,
)
from memsaga.bootstrap import adapter_config
from memsaga.settings import Settings
from sagas.memory_extraction.extractors import RuleBasedExtractor
from sagas.memory_extraction.text import content_hash, normalise

EPISODE = """\
User: Hi! My name is Ana Costa and I'm a nurse at Santa Maria hospital.
Assistant: Nice to meet you, Ana! Do you enjoy working there? I love helping people plan their week.
User: I really do. I moved to Lisbon in May, because my husband got a job here. My sister Ana is a nurse too!
User: By the way, I'm allergic to peanuts and I have diabetes, so please keep that in mind.
Assistant: Noted. Anything else?
User: I'm going to visit Japan next month. My birthday is on 3 March. I was born in 1990.
User: My favourite food is pizza, but I hate flying. My dog Rex loves the beach.
User: Do you think I should learn Japanese? If I were rich, I'd buy a boat. My salary is €2,400 a month.
User: You can reach me at ana.costa@example.org. I'm allergic to peanuts!
"""

EXPECTED = [
    ("User's name is Ana Costa", "identity", False),
    ("User is a nurse at Santa Maria hospital", "identity", False),
    ("User moved to Lisbon in May", "date", False),
    ("User's sister Ana is a nurse", "relation", False),
    ("User is allergic to peanuts", "health", True),
    ("User has diabetes", "health", True),
    ("User plans to visit Japan next month", "plan", False),
    ("User's birthday is on 3 March", "date", False),
    ("User was born in 1990", "date", False),
    ("User's favourite food is pizza", "preference", False),
    ("User hates flying", "preference", False),
    ("User's dog Rex loves the beach", "relation", False),
    ("User's salary is €2,400 a month", "finance", True),
    ("User's email address is ana.costa@example.org", "identifier", True),
]


async def test_a_realistic_episode_gives_exactly_its_facts() -> None:
    candidates = await RuleBasedExtractor().extract(EPISODE)

    assert [(c.text, c.kind, c.sensitive) for c in candidates] == EXPECTED
    sister = candidates[3]
    assert sister.attributes == {"relation": "sister", "name": "Ana"}
    assert candidates[4].sensitivity_reason == "health"
    assert all(c.content_hash == content_hash(c.text) for c in candidates)
    assert all(c.candidate_id == c.content_hash[:16] for c in candidates)


async def test_the_episodes_candidates_carry_their_slots_and_stated_dates() -> None:
    candidates = await RuleBasedExtractor().extract(EPISODE)

    assert [(c.slot, c.value, c.valid_from) for c in candidates if c.slot or c.valid_from] == [
        ("name", "Ana Costa", None),
        ("job_title", "nurse", None),
        ("residence", "Lisbon", "--05"),
        ("relation:sister:Ana:job_title", "nurse", None),
        ("birthday", "--03-03", None),
        (None, None, "1990"),
        ("favourite:food", "pizza", None),
        ("preference:flying", "negative", None),
    ]
    assert {c.polarity for c in candidates} == {"holds"}


async def test_the_same_text_gives_identical_candidates() -> None:
    first = await RuleBasedExtractor().extract(EPISODE)
    second = await RuleBasedExtractor().extract(EPISODE)

    assert [c.model_dump() for c in first] == [c.model_dump() for c in second]
    assert len({c.candidate_id for c in first}) == len(first)  # repeats within the episode are dropped


async def test_the_extractor_heartbeats() -> None:
    beats: list[int] = []

    await RuleBasedExtractor().extract(EPISODE, heartbeat=lambda: beats.append(1))

    assert beats


CHIT_CHAT = """\
User: Hi there! How are you today? I'm good, thanks. I'm a bit tired though.
Assistant: I'm an AI assistant and I love helping. My favourite topic is science. Do you like sushi?
User: I like that! I love it. I love you guys. I'm not sure. I'd love that. I think so. I have a question.
User: Can you help me plan a trip? What if I moved to Japan? If I were rich, I'd buy a boat.
User: I used to love hiking. Maybe I'll learn Japanese someday. I'm going to bed. I'll call you next week.
User: I like your idea. I love how you explained that. I enjoy our chats. I'm OK. Thanks, bye!
User: My order number is 123456789. The meeting is at 3pm on 12 March. My card is 4111 1111 1111 1112.
"""


async def test_questions_hypotheticals_assistant_lines_and_chit_chat_give_nothing() -> None:
    assert await RuleBasedExtractor().extract(CHIT_CHAT) == []


@pytest.mark.parametrize(
    ("said", "memory", "kind", "sensitive"),
    [
        ("I'm a big fan of jazz.", "User is a big fan of jazz", "preference", False),
        ("I prefer tea to coffee.", "User prefers tea to coffee", "preference", False),
        ("I don't like horror movies.", "User does not like horror movies", "preference", False),
        ("Pizza is my favourite food.", "User's favourite food is Pizza", "preference", False),
        ("I'm vegetarian.", "User is vegetarian", "identity", False),
        ("I'm Catholic.", "User is Catholic", "identity", True),
        ("I work as an engineer at Google.", "User works as an engineer at Google", "identity", False),
        ("I speak Portuguese and French.", "User speaks Portuguese and French", "identity", False),
        ("I'm 34 years old.", "User is 34 years old", "identity", False),
        ("I live in Lisbon with my husband.", "User lives in Lisbon with their husband", "fact", False),
        ("My wife's name is Joana.", "User's wife is named Joana", "relation", False),
        ("My brother Tom just got married.", "User's brother Tom just got married", "relation", False),
        ("My mother has diabetes.", "User's mother has diabetes", "relation", True),
        ("I have a cat named Miso.", "User has a cat named Miso", "relation", False),
        ("I walked my dog Rex this morning.", "User's dog is named Rex", "relation", False),
        ("I'm planning to learn Japanese.", "User plans to learn Japanese", "plan", False),
        ("I will start a new job on Monday.", "User plans to start a new job on Monday", "plan", False),
        ("I'm moving to Berlin next month.", "User is moving to Berlin next month", "plan", False),
        ("My wife and I moved to Porto in 2019.", "User moved to Porto in 2019", "date", False),
        ("I was born in Porto in 1990.", "User was born in Porto in 1990", "date", False),
        ("I have a peanut allergy.", "User has a peanut allergy", "health", True),
        ("I was diagnosed with ADHD in 2019.", "User was diagnosed with ADHD in 2019", "health", True),
        ("I make about 60k a year.", "User earns about 60k a year", "finance", True),
        ("I owe my brother 500 euros.", "User owes their brother 500 euros", "finance", True),
        ("Call me at 555-123-4567.", "User's phone number is 555-123-4567", "identifier", True),
        ("IBAN: GB82 WEST 1234 5698 7654 32.", "User's IBAN is GB82WEST12345698765432", "identifier", True),
    ],
)
async def test_one_statement_one_memory(said: str, memory: str, kind: str, sensitive: bool) -> None:
    candidates = await RuleBasedExtractor().extract(said)

    assert [(c.text, c.kind, c.sensitive) for c in candidates] == [(memory, kind, sensitive)]


async def test_card_and_social_security_numbers_are_masked() -> None:
    text = "My card is 4111 1111 1111 1111. My SSN is 123-45-6789."

    candidates = await RuleBasedExtractor().extract(text)

    assert [c.text for c in candidates] == [
        "User has a payment card ending in 1111",
        "User's social security number ends in 6789",
    ]
    assert candidates[0].attributes == {"identifier": "payment_card", "last4": "1111"}
    assert all("4111 1111" not in c.text and "123-45" not in c.text for c in candidates)


async def test_someone_elses_identifiers_are_not_the_users() -> None:
    text = "My sister's email is ana@example.com. My email is me@example.com and my wife's is jo@example.com."

    candidates = await RuleBasedExtractor().extract(text)

    assert [c.text for c in candidates] == ["User's email address is me@example.com"]


def test_content_hash_ignores_case_spacing_and_trailing_punctuation() -> None:
    assert normalise("  User moved to\tLisbon in  May!! ") == "user moved to lisbon in may"
    assert content_hash("User moved to Lisbon in May.") == content_hash("user  moved to LISBON in may")
    assert content_hash("User moved to Lisbon in May") != content_hash("User moved to Porto in May")


# --- The http extractor's reply parser (the HTTP round trip is in tests/integration) ---------------


def test_a_plain_json_list_is_parsed() -> None:
    reply = (
        '[{"text": "User is allergic to peanuts", "kind": "health", "sensitive": true},'
        ' {"text": "User loves hiking", "kind": "preference", "sensitive": false}]'
    )

    candidates = parse_memories(reply)

    assert [(c.text, c.kind, c.sensitive, c.sensitivity_reason) for c in candidates] == [
        ("User is allergic to peanuts", "health", True, "health"),
        ("User loves hiking", "preference", False, None),
    ]


def test_fences_wrappers_strings_and_unknown_kinds_are_tolerated() -> None:
    reply = (
        '```json\n{"memories": [{"text": "User has a dog", "kind": "pet", "sensitive": "true"},'
        ' "User lives in Lisbon", {"text": "user lives in lisbon."}]}\n```'
    )

    candidates = parse_memories(reply)

    assert [(c.text, c.kind, c.sensitive, c.sensitivity_reason) for c in candidates] == [
        ("User has a dog", "fact", True, "flagged by the extractor"),
        ("User lives in Lisbon", "fact", False, None),
    ]


def test_our_sensitivity_rules_apply_even_when_the_model_says_otherwise() -> None:
    [candidate] = parse_memories(
        '[{"text": "User\'s mother has cancer", "kind": "relation", "sensitive": false}]'
    )

    assert candidate.sensitive and candidate.sensitivity_reason == "health"


def test_slots_polarity_and_stated_dates_are_parsed() -> None:
    reply = (
        '[{"text": "User moved to Berlin in May 2024", "kind": "date", "slot": "residence",'
        ' "value": "Berlin", "polarity": "holds", "valid_from": "2024-05"},'
        ' {"text": "User no longer lives in Lisbon", "kind": "fact", "slot": "residence", "value": "Lisbon",'
        ' "polarity": "Ended", "valid_from": "--05"}]'
    )

    candidates = parse_memories(reply)

    assert [(c.slot, c.value, c.polarity, c.valid_from) for c in candidates] == [
        ("residence", "Berlin", "holds", "2024-05"),
        ("residence", "Lisbon", "ended", "--05"),
    ]


@pytest.mark.parametrize(
    ("fields", "slot", "value", "polarity", "valid_from"),
    [
        ({}, None, None, "holds", None),  # an older model's reply: defaults
        ({"slot": None, "value": None, "polarity": None, "valid_from": None}, None, None, "holds", None),
        ({"slot": "age", "value": 34}, "age", "34", "holds", None),
        ({"slot": " ", "value": "positive"}, None, None, "holds", None),  # a value needs a slot
        ({"slot": "diet", "value": "vegan", "polarity": "no longer"}, "diet", "vegan", "holds", None),
        ({"slot": "residence", "valid_from": "May 2024"}, "residence", None, "holds", None),
        ({"slot": "residence", "valid_from": "2024-02-30"}, "residence", None, "holds", None),
        ({"slot": "residence", "valid_from": 2024}, "residence", None, "holds", "2024"),
        ({"slot": ["residence"], "value": {"x": 1}, "polarity": 3}, None, None, "holds", None),
    ],
)
def test_bad_slot_fields_become_defaults_never_errors(
    fields: dict[str, object], slot: str | None, value: str | None, polarity: str, valid_from: str | None
) -> None:
    [candidate] = parse_memories(json.dumps([{"text": "User lives in Berlin", "kind": "fact", **fields}]))

    assert (candidate.slot, candidate.value, candidate.polarity, candidate.valid_from) == (
        slot, value, polarity, valid_from,
    )  # fmt: skip


def test_the_prompt_asks_for_slots_with_the_rules_conventions() -> None:
    for words in (
        "slot",
        "polarity",
        "valid_from",
        "preference:<object",
        "relation:<relation>:<Name>:<aspect>",
    ):
        assert words in SYSTEM_PROMPT
    assert set(MEMORY_SCHEMA["items"]["required"]) >= {"slot", "value", "polarity", "valid_from"}


def test_an_empty_list_means_nothing_to_remember() -> None:
    assert parse_memories("[]") == []


@pytest.mark.parametrize(
    "reply",
    [
        "I could not find any memories.",
        '{"status": "ok"}',
        '[{"kind": "fact"}]',
        "[1, 2]",
        '{"a": [], "b": []}',
    ],
)
def test_garbage_replies_raise_a_named_error(reply: str) -> None:
    with pytest.raises(ExtractorResponseInvalid):
        parse_memories(reply)


# --- Choosing an extractor ---------------------------------------------------------------------------


def test_build_extractor_by_name() -> None:
    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="tiny")

    assert isinstance(build_extractor("rules", adapter_config(settings)), RuleBasedExtractor)
    http = build_extractor("http", adapter_config(settings))
    assert isinstance(http, HttpExtractor) and http.name == "http:tiny"


def test_the_http_extractor_needs_a_base_url() -> None:
    with pytest.raises(AdapterNotConfigured, match="MEMSAGA_LLM_BASE_URL"):
        build_extractor("http", adapter_config(Settings(llm_base_url=None)))


def test_an_unknown_extractor_names_the_choices() -> None:
    with pytest.raises(UnknownAdapter, match="rules, http"):
        build_extractor("magic", adapter_config(Settings()))


@pytest.mark.parametrize(
    ("said", "memories"),
    [
        (
            "I moved to Lisbon in May and I'm still getting used to it.",
            ["User moved to Lisbon in May"],
        ),
        ("I love jazz but maybe I'd like opera too.", ["User loves jazz"]),
        ("I used to smoke, and I'm allergic to cats.", ["User is allergic to cats"]),
    ],
)
async def test_a_hedge_voids_only_its_own_clause(said: str, memories: list[str]) -> None:
    assert [c.text for c in await RuleBasedExtractor().extract(said)] == memories
