"""Embedders: memory texts in, fixed-length vectors out (stored as blobs, see :func:`vector_to_bytes`).

The :class:`Embedder` protocol, the blob format, and the hashing embedder (deterministic
feature hashing, no model, no network). The ``http`` embedder and choosing one by name live
in :mod:`adapters`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Iterator
from typing import Protocol

from sagas.memory_extraction.ports import AdapterError, Heartbeat
from sagas.memory_extraction.text import normalise


class EmbeddingBlobInvalid(AdapterError):
    """Bytes that are not a vector of little-endian float32 values."""


class Embedder(Protocol):
    """Turns texts into vectors of ``dimension`` floats; ``name`` is recorded with the vectors."""

    name: str
    dimension: int

    async def embed(self, texts: list[str], *, heartbeat: Heartbeat | None = None) -> list[list[float]]: ...


def vector_to_bytes(vector: list[float]) -> bytes:
    """The vector as little-endian float32 values: the form it is stored in the blob store."""
    return struct.pack(f"<{len(vector)}f", *vector)


def bytes_to_vector(data: bytes) -> list[float]:
    """The vector stored by :func:`vector_to_bytes`. :raises EmbeddingBlobInvalid:"""
    if len(data) % 4:
        raise EmbeddingBlobInvalid(f"{len(data)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors of the same length (0.0 when either is all zeros)."""
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0


# --- Hashing -------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
# Words every memory shares ("User is a ..."): left out, so they do not make unrelated memories alike.
# fmt: off
STOP_WORDS = frozenset({
    "user", "user's", "s", "is", "are", "was", "were", "be", "been", "has", "have", "had", "a", "an", "the",
    "to", "of", "in", "on", "at", "and", "their", "they",
})
# fmt: on
TRIGRAM_WEIGHT = 0.5  # "allergic"/"allergy" share 5 letter trigrams; words alone would not match at all


def features(text: str) -> Iterator[tuple[str, float]]:
    """Weighted features of ``text``: words, word pairs, and letter trigrams of words (for inflections)."""
    words = _WORD.findall(normalise(text))
    content = [word for word in words if word not in STOP_WORDS] or words
    for word in content:
        yield f"w:{word}", 1.0
        padded = f"<{word}>"
        for i in range(len(padded) - 2):
            yield f"c:{padded[i : i + 3]}", TRIGRAM_WEIGHT
    for first, second in itertools.pairwise(content):
        yield f"b:{first} {second}", 1.0


def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    # blake2b, not hash(): Python salts str hashes per process, and vectors must match across runs.
    digest = hashlib.blake2b(feature.encode(), digest_size=8, person=b"memsaga-fh1").digest()
    value = int.from_bytes(digest, "big")
    return value % dimension, -1.0 if value >> 63 else 1.0


def hashed_vector(text: str, dimension: int) -> list[float]:
    """``text``'s features hashed (with signs) into ``dimension`` buckets, L2-normalised (zeros if none)."""
    vector = [0.0] * dimension
    for feature, weight in features(text):
        index, sign = _bucket(feature, dimension)
        vector[index] += sign * weight
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


class HashingEmbedder:
    """Deterministic, offline embeddings by feature hashing: similar wording, similar vectors."""

    def __init__(self, dimension: int = 256) -> None:
        if dimension <= 0:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.dimension = dimension
        self.name = "hashing-v1"

    async def embed(self, texts: list[str], *, heartbeat: Heartbeat | None = None) -> list[list[float]]:
        """One vector per text, in order; the same text always gives the same vector."""
        vectors = []
        for i, text in enumerate(texts):
            if i % 100 == 0:
                if heartbeat is not None:
                    heartbeat()
                await asyncio.sleep(0)  # let the event loop breathe on long batches
            vectors.append(hashed_vector(text, self.dimension))
        return vectors
