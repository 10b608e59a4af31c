"""The retrieval fixtures (tests/fixtures/recall.json and recall_heldout.json): size, references,
answers, metrics."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from bench.recall_fixture import (
    FIXTURE_PATH,
    HELDOUT_PATH,
    Answer,
    Question,
    RecallFixture,
    content_words,
    fixture_memories,
    load_fixture,
    quality,
    rank_of,
    shares_content_word,
)


@pytest.fixture(scope="module", params=[FIXTURE_PATH, HELDOUT_PATH], ids=["first", "heldout"])
def fixture(request: pytest.FixtureRequest) -> RecallFixture:
    return load_fixture(request.param)


def test_the_two_sets_share_no_user_episode_or_question() -> None:
    first, heldout = load_fixture(FIXTURE_PATH), load_fixture(HELDOUT_PATH)
    assert not {u.user_id for u in first.users} & {u.user_id for u in heldout.users}
    assert not set(first.episodes) & set(heldout.episodes)
    assert not {q.question_id for q in first.questions} & {q.question_id for q in heldout.questions}


def test_the_fixture_has_the_size_issue_13_asks_for(fixture: RecallFixture) -> None:
    assert len(fixture.users) >= 8
    assert all(len(user.episodes) >= 5 for user in fixture.users)
    assert len(fixture.episodes) >= 40
    assert len(fixture.questions) >= 120
    per_user = Counter(question.user_id for question in fixture.questions)
    assert {user.user_id for user in fixture.users} == set(per_user)
    assert min(per_user.values()) >= 15


def test_ids_are_unique_and_every_question_names_its_users_episode(fixture: RecallFixture) -> None:
    users = [user.user_id for user in fixture.users]
    episodes = [episode.episode_id for user in fixture.users for episode in user.episodes]
    questions = [question.question_id for question in fixture.questions]
    for ids in (users, episodes, questions):
        assert len(ids) == len(set(ids))
    owner = {episode.episode_id: user.user_id for user in fixture.users for episode in user.episodes}
    for question in fixture.questions:
        assert question.user_id in users
        assert owner[question.answer.episode_id] == question.user_id, question.question_id


def _raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(FIXTURE_PATH.read_text(encoding="utf-8"))
    return raw


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("user_id", "nobody", "is not an episode of user 'nobody'"),
        ("question_id", "q002", "repeated question_id: q002"),
    ],
)
def test_a_broken_reference_is_refused(field: str, value: str, error: str) -> None:
    raw = _raw()
    raw["questions"][0][field] = value
    with pytest.raises(ValidationError, match=error):
        RecallFixture.model_validate(raw)


async def test_every_expected_memory_is_exactly_what_the_rule_extractor_makes(fixture: RecallFixture) -> None:
    made: dict[str, list[str]] = {}
    for memory in await fixture_memories(fixture):
        made.setdefault(memory.episode_id, []).append(memory.text)
    wrong = [
        (question.question_id, question.answer.memory_text, made.get(question.answer.episode_id, []))
        for question in fixture.questions
        if question.answer.memory_text not in made.get(question.answer.episode_id, [])
    ]
    assert not wrong


async def test_a_memory_text_names_one_memory_of_its_user(fixture: RecallFixture) -> None:
    texts = Counter((memory.user_id, memory.text) for memory in await fixture_memories(fixture))
    assert [key for key, count in texts.items() if count > 1] == []


async def test_questions_have_near_misses_in_other_users_memories(fixture: RecallFixture) -> None:
    # Per-user filtering must matter: most questions share a word with another user's memory.
    memories = await fixture_memories(fixture)
    confusable = [
        question
        for question in fixture.questions
        if any(
            memory.user_id != question.user_id and shares_content_word(question.question, memory.text)
            for memory in memories
        )
    ]
    # The held-out set's users differ more from each other (own names of pets, products, places).
    share = 0.4 if fixture.questions[0].question_id.startswith("h") else 0.5
    assert len(confusable) >= share * len(fixture.questions)


def test_questions_mix_shared_words_and_paraphrases(fixture: RecallFixture) -> None:
    shared = sum(shares_content_word(q.question, q.answer.memory_text) for q in fixture.questions)
    paraphrases = len(fixture.questions) - shared
    assert paraphrases >= 0.3 * len(fixture.questions)
    assert shared >= 0.3 * len(fixture.questions)


def test_content_words_drop_stopwords_and_stem_crudely() -> None:
    assert content_words("Where does her sister's husband live?") == {"sister", "husband", "liv"}
    assert shares_content_word("Where does the user live?", "User lives in Utrecht")
    assert not shares_content_word("Which city is she based in?", "User lives in Utrecht")


# --- Metrics -----------------------------------------------------------------------------------


def _question(question_id: str, memory_text: str) -> Question:
    answer = Answer(episode_id="e", memory_text=memory_text)
    return Question(question_id=question_id, user_id="u", question="?", answer=answer)


def test_rank_of_is_one_based_and_none_for_a_miss() -> None:
    assert rank_of("b", ["a", "b", "c"]) == 2
    assert rank_of("a", ["a"]) == 1
    assert rank_of("z", ["a", "b"]) is None
    assert rank_of("z", []) is None


def test_quality_of_hand_made_rankings() -> None:
    questions = [_question(f"q{n}", text) for n, text in enumerate("ABCDE", 1)]
    rankings = {
        "q1": ["A", "x", "y"],  # rank 1
        "q2": ["x", "B", "y"],  # rank 2
        "q3": ["x", "y", "z", "w", "C"],  # rank 5: the last one recall@5 counts
        "q4": ["x", "y", "z", "w", "v", "D"],  # rank 6: past recall@5, still in MRR
        "q5": ["x", "y"],  # a miss
    }
    report = quality("hand-made", questions, rankings)
    assert report.method == "hand-made"
    assert report.questions == 5
    assert report.recall_at_1 == pytest.approx(1 / 5)
    assert report.recall_at_5 == pytest.approx(3 / 5)
    assert report.mrr == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 6 + 0) / 5)


def test_quality_is_perfect_for_perfect_rankings_and_zero_for_none() -> None:
    questions = [_question("q1", "A"), _question("q2", "B")]
    perfect = quality("perfect", questions, {"q1": ["A", "B"], "q2": ["B", "A"]})
    assert (perfect.recall_at_1, perfect.recall_at_5, perfect.mrr) == (1.0, 1.0, 1.0)
    empty = quality("empty", questions, {"q1": [], "q2": []})
    assert (empty.recall_at_1, empty.recall_at_5, empty.mrr) == (0.0, 0.0, 0.0)


def test_quality_refuses_a_question_without_a_ranking() -> None:
    with pytest.raises(ValueError, match="no ranking for q2"):
        quality("partial", [_question("q1", "A"), _question("q2", "B")], {"q1": ["A"]})
    with pytest.raises(ValueError, match="no questions"):
        quality("none", [], {})
