"""The http embedder: vectors from an OpenAI-compatible ``POST /embeddings``."""

from __future__ import annotations

from typing import Any

from adapters.errors import EndpointUnavailable
from adapters.http_endpoint import JsonEndpoint
from sagas.memory_extraction.ports import AdapterError, Heartbeat


class EmbedderUnavailable(EndpointUnavailable):
    """The http embedder's endpoint failed (connection refused and 5xx are retryable, 4xx are not)."""


class EmbedderResponseInvalid(AdapterError):
    """The http embedder answered, but not with one vector of the configured dimension per text."""


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
