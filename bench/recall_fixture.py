"""The retrieval-quality fixture of memory search, and the recall metrics it is scored with.

``tests/fixtures/recall.json`` (version 1) holds conversation episodes of 8 users and the
questions an agent asks to recall what they said::

    {"version": 1, "description": "...",
     "users": [{"user_id": "maya",
                "episodes": [{"episode_id": "maya-1", "text": "User: Hi! My name is ..."}]}],
     "questions": [{"question_id": "q001", "user_id": "maya",
                    "question": "Where does the user live?",
                    "answer": {"episode_id": "maya-1",
                               "memory_text": "User lives in Utrecht, close to the central station"}}]}

Episode texts are plain turns or ``User:`` / ``Assistant:`` lines. An answer's ``memory_text``
is, exactly, the text of one candidate the rule-based extractor makes of that episode (a
test holds this), and no two episodes of a user give the same memory text, so a hit is told by
text alone. Every user lives somewhere, works somewhere and has relatives, tastes and a diet or
health memory, so questions of one user have near-misses among other users' memories.

How it was written: by hand for this project, before any search existed. The episodes were
written as a user talks to an assistant (including sentences the extractor finds nothing in),
the extractor was run over them, a few sentences were reworded where it missed a fact worth
asking about (it drops "I live in Porto with my wife and our two boys" whole), and then
questions were written as an agent would ask, each about one memory: some share words with
it ("Where does her mother live?"), others are paraphrases sharing no content word ("Can I put
satay sauce in her dinner?" for an allergy to peanuts); :func:`shares_content_word` tells
which. Questions were not tried against any search.

``tests/fixtures/recall_heldout.json``, the second labelled set (same shape, 8 other users, 40
episodes, 120 questions), was written the same way on 2026-12-04, after the first set had shown
that no fusion of the two rankings beats the vector ranking alone on it, and before any search
ran on it: it is held out, so the fusion (reciprocal rank fusion, k = 60, both rankings weighed
alike, fixed on the first set) is measured on questions it was never fitted to. More of its
questions name a person, pet, product or place ("What breed is Pixel?", "Is she a DNB
customer?") than the first set's, as an agent's often do; it has paraphrases too.

A run ranks, for each question, the memory texts of that question's user;
:func:`quality` scores the rankings: recall@1, recall@5 and MRR (the reciprocal of the
expected memory's 1-based rank, 0 when it is not in the ranking).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from sagas.memory_extraction.extractors import Extractor, RuleBasedExtractor

FIXTURE_PATH = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "recall.json"
"""The fixture in a source checkout (the container image copies ``bench/`` but not ``tests/``)."""
HELDOUT_PATH = FIXTURE_PATH.with_name("recall_heldout.json")
"""The second labelled set, held out: scored once the fusion was fixed on the first (module docstring)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Episode(_Frozen):
    """One conversation episode of a user."""

    episode_id: str
    text: str


class User(_Frozen):
    """A user and their episodes."""

    user_id: str
    episodes: tuple[Episode, ...]


class Answer(_Frozen):
    """The memory that answers a question: the episode it comes from and its exact text."""

    episode_id: str
    memory_text: str


class Question(_Frozen):
    """A question an agent asks about one user, and the memory that answers it."""

    question_id: str
    user_id: str
    question: str
    answer: Answer


class RecallFixture(_Frozen):
    """The whole file; ids are unique and every question names its own user's episode."""

    version: Literal[1]
    description: str = ""
    users: tuple[User, ...]
    questions: tuple[Question, ...]

    @model_validator(mode="after")
    def _references_hold(self) -> Self:
        _unique("user_id", [user.user_id for user in self.users])
        _unique("episode_id", [episode.episode_id for user in self.users for episode in user.episodes])
        _unique("question_id", [question.question_id for question in self.questions])
        owner = {episode.episode_id: user.user_id for user in self.users for episode in user.episodes}
        for question in self.questions:
            if owner.get(question.answer.episode_id) != question.user_id:
                raise ValueError(
                    f"{question.question_id}: episode {question.answer.episode_id!r} is not an episode "
                    f"of user {question.user_id!r}"
                )
        return self

    @property
    def episodes(self) -> dict[str, Episode]:
        """Every episode by id."""
        return {episode.episode_id: episode for user in self.users for episode in user.episodes}


def _unique(what: str, ids: list[str]) -> None:
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"repeated {what}: {', '.join(repeated)}")


def load_fixture(path: Path = FIXTURE_PATH) -> RecallFixture:
    """The fixture at ``path``. :raises pydantic.ValidationError: bad shape or broken references."""
    return RecallFixture.model_validate_json(path.read_bytes())


@dataclass(frozen=True)
class FixtureMemory:
    """A memory the extractor makes of a fixture episode: what a search run indexes."""

    user_id: str
    episode_id: str
    text: str
    slot: str | None = None
    value: str | None = None


async def fixture_memories(fixture: RecallFixture, extractor: Extractor | None = None) -> list[FixtureMemory]:
    """Every memory ``extractor`` (default: the rule-based one) makes of the episodes, in file order."""
    extractor = extractor or RuleBasedExtractor()
    return [
        FixtureMemory(user.user_id, episode.episode_id, candidate.text, candidate.slot, candidate.value)
        for user in fixture.users
        for episode in user.episodes
        for candidate in await extractor.extract(episode.text)
    ]


# --- Content words ---------------------------------------------------------------------------

_STOPWORDS = (
    "a about after all also am an and any anything are as at be been before being but by can could did"
    " do does doing for from had has have he her hers him his how i if in into is it its me more most my"
    " no not now of off on or our out she should so some than that the their them they this to too up us"
    " very was we were what when where which who whom why will with would you your user s t d ll m re ve"
)
STOPWORDS = frozenset(_STOPWORDS.split())
"""Words no keyword search matches on (and "user", which every memory text starts with)."""
_WORD = re.compile(r"[^\W\d_]+")  # so "sister's" is "sister" and "s", a stopword
_SUFFIX = re.compile(r"(?:ing|ed|es|s|e)$")


def content_words(text: str) -> frozenset[str]:
    """The words of ``text`` that carry content, crudely stemmed ("lives", "living" -> "liv")."""
    words = (word.casefold() for word in _WORD.findall(text))
    return frozenset(
        _SUFFIX.sub("", word) if len(word) > 3 else word for word in words if word not in STOPWORDS
    )


def shares_content_word(question: str, memory_text: str) -> bool:
    """Whether a keyword search could match ``question`` to ``memory_text`` on some word."""
    return not content_words(question).isdisjoint(content_words(memory_text))


# --- Metrics ---------------------------------------------------------------------------------


def rank_of(expected: str, ranking: Sequence[str]) -> int | None:
    """The 1-based rank of ``expected`` in ``ranking``, or None when it is not there."""
    return next((rank for rank, text in enumerate(ranking, 1) if text == expected), None)


@dataclass(frozen=True)
class QualityReport:
    """Recall@1, recall@5 and MRR of one retrieval method over the fixture's questions."""

    method: str
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float


def quality(
    method: str, questions: Sequence[Question], rankings: Mapping[str, Sequence[str]]
) -> QualityReport:
    """Scores ``rankings`` (question id -> memory texts, best first) against ``questions``' answers.

    :raises ValueError: no questions, or a question without a ranking.
    """
    if not questions:
        raise ValueError("no questions to score")
    missing = [question.question_id for question in questions if question.question_id not in rankings]
    if missing:
        raise ValueError(f"{method}: no ranking for {', '.join(missing)}")
    ranks = [rank_of(q.answer.memory_text, rankings[q.question_id]) for q in questions]
    count = len(ranks)
    return QualityReport(
        method=method,
        questions=count,
        recall_at_1=sum(rank is not None and rank <= 1 for rank in ranks) / count,
        recall_at_5=sum(rank is not None and rank <= 5 for rank in ranks) / count,
        mrr=sum(1 / rank for rank in ranks if rank is not None) / count,
    )
