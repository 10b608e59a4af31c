"""The adapters' configuration: plain values, built from ``Settings`` by the composition root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    """What the http extractor and the embedders need to know (``MEMSAGA_LLM_*``, ``MEMSAGA_EMBEDDING_*``)."""

    llm_base_url: str | None
    llm_api_key: str | None
    llm_model: str
    embedding_base_url: str | None
    embedding_api_key: str | None
    embedding_model: str
    embedding_dimension: int
    http_timeout_seconds: float
