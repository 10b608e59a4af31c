"""Adapters at the edge: extractors and embedders that do I/O, and choosing one by name.

``sagas/memory_extraction`` holds the ports (protocols, :class:`AdapterError`) and the offline
implementations; this package holds the HTTP ones. It takes an :class:`AdapterConfig` that
the composition root (:mod:`memsaga.bootstrap`) builds from ``Settings``, and imports
nothing from ``memsaga``.
"""

from adapters.config import AdapterConfig
from adapters.errors import AdapterNotConfigured, EndpointUnavailable, UnknownAdapter
from adapters.factories import EMBEDDERS, EXTRACTORS, build_embedder, build_extractor

__all__ = [
    "EMBEDDERS",
    "EXTRACTORS",
    "AdapterConfig",
    "AdapterNotConfigured",
    "EndpointUnavailable",
    "UnknownAdapter",
    "build_embedder",
    "build_extractor",
]
