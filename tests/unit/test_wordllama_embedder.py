"""The wordllama embedder: offline, deterministic, normalised, and good at topical matches."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from adapters import build_embedder
from adapters.wordllama_embedder import DIMENSION, WordLlamaEmbedder
from memsaga.bootstrap import adapter_config
from memsaga.settings import Settings
from sagas.memory_extraction.embedders import cosine

MEMORIES = [
    "User lives in Utrecht",
    "User loves cycling",
    "User is allergic to peanuts",
    "User works at Acme as an engineer",
]


async def test_vectors_are_256_long_unit_length_and_repeatable() -> None:
    embedder = WordLlamaEmbedder()
    first = await embedder.embed(MEMORIES)
    again = await WordLlamaEmbedder().embed(list(reversed(MEMORIES)))

    assert embedder.dimension == DIMENSION == 256 and embedder.name == "wordllama:l2_supercat_256"
    assert [len(v) for v in first] == [256] * len(MEMORIES)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in first)
    assert first == list(reversed(again))


async def test_a_question_is_closest_to_the_memory_that_answers_it() -> None:
    embedder = WordLlamaEmbedder()
    memories = await embedder.embed(MEMORIES)
    questions = [
        "where does the user live?",
        "is the user allergic to anything?",
        "where does the user work?",
    ]
    answers = [0, 2, 3]
    for vector, answer in zip(await embedder.embed(questions), answers, strict=True):
        scores = [cosine(vector, m) for m in memories]
        assert scores.index(max(scores)) == answer, scores


async def test_no_texts_no_vectors() -> None:
    assert await WordLlamaEmbedder().embed([]) == []


def test_it_is_the_default_embedder_and_built_by_name() -> None:
    settings = Settings()
    assert settings.embedder == "wordllama"
    assert isinstance(build_embedder("wordllama", adapter_config(settings)), WordLlamaEmbedder)


def test_it_loads_with_every_download_refused() -> None:
    """The weights and tokenizer come from the wheel: a proxy that refuses everything changes nothing."""
    code = (
        "import asyncio; from adapters.wordllama_embedder import WordLlamaEmbedder;"
        "print(len(asyncio.run(WordLlamaEmbedder().embed(['hello']))[0]))"
    )
    refuse = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **refuse}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "256"
