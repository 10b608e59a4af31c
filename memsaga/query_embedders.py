"""The embedder a question is embedded with: the one of the vector space that serves its user.

The ``memory_search`` read model says which space (embedder name and dimension) serves a user
(:func:`projections.search_models.serving_space`); a question must be embedded in that space,
whatever ``MEMSAGA_EMBEDDER`` says now. :class:`QueryEmbedders` returns the configured embedder
when it is that space's, and otherwise builds one for it from its recorded name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from adapters import build_embedder
from adapters.config import AdapterConfig
from adapters.wordllama_embedder import WordLlamaEmbedder
from memsaga.errors import MemsagaError
from projections.search_models import VectorSpace
from sagas.memory_extraction.embedders import Embedder, HashingEmbedder
from sagas.memory_extraction.ports import AdapterError

HTTP_PREFIX = "http:"


class ServingEmbedderUnavailable(MemsagaError):
    """The user's memories are searched in a model this process cannot embed a question with."""

    def __init__(self, user_id: str, space: VectorSpace, detail: str) -> None:
        self.space = space
        super().__init__(
            f"the memories of {user_id} are searched with {space.embedder} ({space.dimension} dimensions),"
            f" and this process cannot embed a question with it: {detail} (search with --mode keyword"
            " meanwhile; docs/search.md, Vectors of several models)"
        )


def _same(embedder: Embedder | type[WordLlamaEmbedder], space: VectorSpace) -> bool:
    return (embedder.name, embedder.dimension) == (space.embedder, space.dimension)


@dataclass
class QueryEmbedders:
    """The configured embedder, and those built for other spaces (once each, then kept)."""

    configured: Embedder
    config: AdapterConfig | None = None
    """Settings of an ``http`` model (its base URL); None: only offline models can be built."""
    _built: dict[VectorSpace, Embedder] = field(default_factory=dict)

    def for_space(self, space: VectorSpace, *, user_id: str) -> Embedder:
        """The embedder of ``space``. :raises ServingEmbedderUnavailable: none can be built here."""
        if _same(self.configured, space):
            return self.configured
        if space not in self._built:
            self._built[space] = self._build(space, user_id)
        return self._built[space]

    def _build(self, space: VectorSpace, user_id: str) -> Embedder:
        if space.embedder == HashingEmbedder(1).name:
            return HashingEmbedder(space.dimension)
        if _same(WordLlamaEmbedder, space):
            return WordLlamaEmbedder()
        if space.embedder.startswith(HTTP_PREFIX):
            if self.config is None:
                raise ServingEmbedderUnavailable(user_id, space, "no http embedder is configured")
            model = space.embedder.removeprefix(HTTP_PREFIX)
            config = replace(self.config, embedding_model=model, embedding_dimension=space.dimension)
            try:
                embedder = build_embedder("http", config)
            except AdapterError as exc:
                raise ServingEmbedderUnavailable(user_id, space, str(exc)) from None
            if _same(embedder, space):
                return embedder
        raise ServingEmbedderUnavailable(user_id, space, "memsaga knows no embedder of that name")
