"""Embedders: memory texts in, fixed-length vectors out (stored as blobs, see :func:`vector_to_bytes`).

Two come with memsaga, chosen by name with :func:`build_embedder`: ``hashing`` (the default:
deterministic feature hashing, no model, no network) and ``http`` (an OpenAI-compatible
``POST /embeddings``). Anything of the :class:`Embedder` shape plugs in.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Iterator
from typing import Any, Protocol

from memsaga.settings import Settings
from sagas.memory_extraction.endpoints import (
    AdapterError,
    EndpointUnavailable,
    Heartbeat,
    JsonEndpoint,
    UnknownAdapter,
    configured_endpoint,
)
from sagas.memory_extraction.text import normalise

DEFAULT_EMBEDDER = "hashing"
EMBEDDERS = ("hashing", "http")


class EmbedderUnavailable(EndpointUnavailable):
    """The http embedder's endpoint failed (connection refused and 5xx are retryable, 4xx are not)."""


class EmbedderResponseInvalid(AdapterError):
    """The http embedder answered, but not with one vector of the configured dimension per text."""


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


# --- HTTP ----------------------------------------------------------------------------------------


class HttpEmbedder:
    """Embeddings from an OpenAI-compatible ``POST /embeddings``, checked against ``dimension``."""

    def __init__(self, endpoint: JsonEndpoint, *, model: str, dimension: int, batch_size: int = 64) -> None:
        self.endpoint = endpoint
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size
        self.name = f"http:{model}"

    async def embed(self, texts: list[str], *, heartbeat: Heartbeat | None = None) -> list[list[float]]:
        """One vector per text, in order. :raises EmbedderUnavailable, EmbedderResponseInvalid:"""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            # "dimensions" asks models that can shorten their vectors (text-embedding-3-*) to do so.
            body = {"model": self.model, "input": batch, "dimensions": self.dimension}
            answer = await self.endpoint.post(
                "embeddings",
                body,
                heartbeat=heartbeat,
                unavailable=EmbedderUnavailable,
                invalid=EmbedderResponseInvalid,
            )
            vectors.extend(self._vectors(answer, len(batch)))
        return vectors

    def _vectors(self, answer: Any, expected: int) -> list[list[float]]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            got = str(answer)[:200]
            raise EmbedderResponseInvalid(f"expected data with {expected} embeddings, got {got!r}")
        if all(isinstance(item, dict) and isinstance(item.get("index"), int) for item in data):
            data = sorted(data, key=lambda item: item["index"])
        return [self._vector(item) for item in data]

    def _vector(self, item: Any) -> list[float]:
        values = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in values
        ):
            raise EmbedderResponseInvalid(f"an embedding is not a list of numbers: {str(item)[:200]!r}")
        if len(values) != self.dimension:
            raise EmbedderResponseInvalid(
                f"{self.model} returned {len(values)}-dimensional vectors, expected {self.dimension}: set "
                f"MEMSAGA_EMBEDDING_DIMENSION={len(values)} or use a model that honours 'dimensions'"
            )
        return [float(x) for x in values]


def build_embedder(spec: str, settings: Settings) -> Embedder:
    """The embedder named ``spec`` ("hashing" or "http"). :raises UnknownAdapter, AdapterNotConfigured:"""
    if spec == "hashing":
        return HashingEmbedder(settings.embedding_dimension)
    if spec == "http":
        endpoint = configured_endpoint(
            "embedder",
            "MEMSAGA_EMBEDDING",
            settings.embedding_base_url,
            settings.embedding_api_key,
            settings.http_timeout_seconds,
        )
        return HttpEmbedder(endpoint, model=settings.embedding_model, dimension=settings.embedding_dimension)
    raise UnknownAdapter("embedder", spec, EMBEDDERS)
