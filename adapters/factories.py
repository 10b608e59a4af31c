"""Choosing an extractor or embedder by name (``MEMSAGA_EXTRACTOR``, ``MEMSAGA_EMBEDDER``, options)."""

from __future__ import annotations

from adapters.config import AdapterConfig
from adapters.errors import UnknownAdapter
from adapters.http_embedder import HttpEmbedder
from adapters.http_endpoint import configured_endpoint
from adapters.http_extractor import HttpExtractor
from adapters.wordllama_embedder import WordLlamaEmbedder
from sagas.memory_extraction.embedders import Embedder, HashingEmbedder
from sagas.memory_extraction.extractors import Extractor, RuleBasedExtractor

EXTRACTORS = ("rules", "http")
EMBEDDERS = ("wordllama", "hashing", "http")


def build_extractor(spec: str, config: AdapterConfig) -> Extractor:
    """The extractor named ``spec`` ("rules" or "http"). :raises UnknownAdapter, AdapterNotConfigured:"""
    if spec == "rules":
        return RuleBasedExtractor()
    if spec == "http":
        endpoint = configured_endpoint(
            "extractor", "MEMSAGA_LLM", config.llm_base_url, config.llm_api_key, config.http_timeout_seconds
        )
        return HttpExtractor(endpoint, model=config.llm_model)
    raise UnknownAdapter("extractor", spec, EXTRACTORS)


def build_embedder(spec: str, config: AdapterConfig) -> Embedder:
    """The embedder named ``spec`` (see :data:`EMBEDDERS`). :raises UnknownAdapter, AdapterNotConfigured:"""
    if spec == "wordllama":
        return WordLlamaEmbedder()
    if spec == "hashing":
        return HashingEmbedder(config.embedding_dimension)
    if spec == "http":
        endpoint = configured_endpoint(
            "embedder",
            "MEMSAGA_EMBEDDING",
            config.embedding_base_url,
            config.embedding_api_key,
            config.http_timeout_seconds,
        )
        return HttpEmbedder(endpoint, model=config.embedding_model, dimension=config.embedding_dimension)
    raise UnknownAdapter("embedder", spec, EMBEDDERS)
