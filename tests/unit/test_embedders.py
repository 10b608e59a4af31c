"""The hashing embedder, the vector blob format, and choosing an embedder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from adapters import AdapterNotConfigured, UnknownAdapter, build_embedder
from adapters.http_embedder import HttpEmbedder
from memsaga.bootstrap import adapter_config
from memsaga.settings import Settings
from sagas.memory_extraction.embedders import (
    EmbeddingBlobInvalid,
    HashingEmbedder,
    bytes_to_vector,
    cosine,
    vector_to_bytes,
)

TEXTS = [
    "User loves hiking in the mountains",
    "User enjoys hiking in mountains",
    "User's salary is 2400 euros a month",
    "User is allergic to peanuts",
    "User has a peanut allergy",
]


async def test_vectors_have_the_dimension_and_unit_length() -> None:
    vectors = await HashingEmbedder(64).embed(TEXTS)

    assert len(vectors) == len(TEXTS)
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0) for v in vectors)


async def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    hiking, hiking_again, salary, allergic, allergy = await HashingEmbedder(256).embed(TEXTS)

    assert cosine(hiking, hiking_again) > 0.5
    assert cosine(hiking, hiking_again) > cosine(hiking, salary) + 0.3
    assert cosine(allergic, allergy) > cosine(allergic, hiking) + 0.3


async def test_the_same_text_gives_the_same_vector_in_another_process() -> None:
    [here] = await HashingEmbedder(32).embed([TEXTS[0]])
    # A different hash seed would change Python's hash(): the embedder must not depend on it.
    script = (
        "import asyncio, json; from sagas.memory_extraction.embedders import HashingEmbedder;"
        f"print(json.dumps(asyncio.run(HashingEmbedder(32).embed([{TEXTS[0]!r}]))[0]))"
    )
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)

    assert json.loads(out.stdout) == here


async def test_an_empty_text_is_the_zero_vector() -> None:
    assert await HashingEmbedder(8).embed([""]) == [[0.0] * 8]


async def test_the_embedder_heartbeats() -> None:
    beats: list[int] = []

    await HashingEmbedder(8).embed(TEXTS, heartbeat=lambda: beats.append(1))

    assert beats


def test_a_dimension_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HashingEmbedder(0)


def test_vectors_are_stored_as_little_endian_float32() -> None:
    assert vector_to_bytes([1.0, -2.0]) == b"\x00\x00\x80\x3f\x00\x00\x00\xc0"
    assert bytes_to_vector(vector_to_bytes([0.5, -0.25, 3.0])) == [0.5, -0.25, 3.0]
    assert bytes_to_vector(b"") == []


def test_a_blob_that_is_not_float32s_is_refused() -> None:
    with pytest.raises(EmbeddingBlobInvalid, match="5 bytes"):
        bytes_to_vector(b"\x00" * 5)


def test_build_embedder_by_name() -> None:
    settings = Settings(embedding_base_url="http://127.0.0.1:9/v1", embedding_dimension=16)

    hashing = build_embedder("hashing", adapter_config(settings))
    assert isinstance(hashing, HashingEmbedder) and hashing.dimension == 16
    http = build_embedder("http", adapter_config(settings))
    assert isinstance(http, HttpEmbedder) and http.dimension == 16


def test_the_http_embedder_needs_a_base_url() -> None:
    with pytest.raises(AdapterNotConfigured, match="MEMSAGA_EMBEDDING_BASE_URL"):
        build_embedder("http", adapter_config(Settings(embedding_base_url=None)))


def test_an_unknown_embedder_names_the_choices() -> None:
    with pytest.raises(UnknownAdapter, match="hashing, http"):
        build_embedder("word2vec", adapter_config(Settings()))
