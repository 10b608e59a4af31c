"""The wordllama embedder: a 256-dimension static embedding model shipped inside its wheel.

``wordllama`` (MIT) carries its weights (``l2_supercat_256``, 16 MB) and tokenizer, so it
runs offline. Its loader looks for the tokenizer under a folder name the wheel does not
use and would then try to download it; loading from the package folder with downloads
disabled avoids that (``../shared/ECOSYSTEM.md`` 8.2). The model is loaded once per
process, on first use, and shared by every embedder instance.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from sagas.memory_extraction.ports import AdapterError, Heartbeat

MODEL = "l2_supercat_256"
DIMENSION = 256
BATCH = 256  # texts per model call; the heartbeat runs between batches

_lock = threading.Lock()
_model: Any = None


class EmbeddingModelUnavailable(AdapterError):
    """The wordllama package or its weights cannot be loaded (reinstall with ``make venv``)."""


def load_model() -> Any:
    """The process's wordllama model, loaded on first call. :raises EmbeddingModelUnavailable:"""
    global _model
    with _lock:
        if _model is None:
            try:
                import wordllama
                from wordllama import WordLlama

                folder = Path(wordllama.__file__).parent
                _model = WordLlama.load(
                    config="l2_supercat", dim=DIMENSION, cache_dir=folder, disable_download=True
                )
            except (ImportError, OSError, ValueError, FileNotFoundError) as exc:
                raise EmbeddingModelUnavailable(
                    f"cannot load the wordllama model {MODEL}: {exc} (reinstall with `make venv`, "
                    "or choose MEMSAGA_EMBEDDER=hashing)"
                ) from exc
        return _model


class WordLlamaEmbedder:
    """L2-normalised 256-dimension vectors from wordllama ``l2_supercat``; the same text, the same vector."""

    name = f"wordllama:{MODEL}"
    dimension = DIMENSION

    async def embed(self, texts: list[str], *, heartbeat: Heartbeat | None = None) -> list[list[float]]:
        """One vector per text, in order, computed off the event loop."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            if heartbeat is not None:
                heartbeat()
            batch = texts[start : start + BATCH]
            vectors.extend(await asyncio.to_thread(_embed, batch))
        return vectors


def _embed(texts: list[str]) -> list[list[float]]:
    if not texts:
        return []
    matrix = load_model().embed(texts, norm=True, batch_size=BATCH)
    rows: list[list[float]] = matrix.tolist()
    return rows
