"""Synthetic memories for the recall speed benchmark: texts, questions, wordllama vectors, bulk load.

Texts come from templates of the kinds the extractor makes ("User's sister Ana lives in
Porto"), drawn without repeats from a seeded generator; a pool of at most ``pool_size`` distinct
texts is embedded with wordllama once, and every row takes one of them plus Gaussian noise
(renormalised), so that no two rows share a vector and rows reusing a text stay near it. Rows
go straight into the active ``memory_search`` table by binary COPY: the speed benchmark
measures search, not the projection's handlers (the quality benchmark goes through events).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from adapters.wordllama_embedder import WordLlamaEmbedder

Vectors = npt.NDArray[np.float32]

NOISE = 0.02  # per component: about 0.95 cosine between a row and its pool text's vector
CHUNK = 20_000  # rows per COPY
CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_NAMES = _words(
    "Ana Ben Carla Dario Elif Farid Greta Hugo Ines Jonas Kaito Lena Mateo Nadia Omar Paula Quinn"
    " Rosa Sven Tomas Uma Victor Wen Xavier Yara Zoe Amir Bea Cyril Dana Emil Flora Goran Hana Ivo"
    " Jana Kofi Lise Milo"
)
_RELATIONS = _words(
    "sister brother mother father son daughter wife husband cousin aunt uncle friend colleague"
)
_CITIES = _words(
    "Utrecht Lisbon Porto Berlin Munich Lyon Madrid Seville Milan Turin Vienna Prague Krakow Oslo"
    " Bergen Dublin Cork Leeds Glasgow Ghent Antwerp Basel Zurich Geneva Bologna Valencia Malaga"
    " Gdansk Tallinn Riga"
)
_ACTIVITIES = _words(
    "cycling hiking climbing swimming rowing sailing painting pottery baking gardening chess"
    " knitting running skiing surfing birdwatching photography woodworking fishing dancing singing"
    " yoga"
)
_FOODS = _words(
    "peanuts gluten shellfish dairy eggs soy sesame mushrooms olives coriander sushi ramen curry"
    " pizza lasagne falafel dumplings paella risotto tacos"
)
_JOBS = _words(
    "nurse teacher engineer architect baker pilot lawyer plumber chef designer pharmacist"
    " electrician journalist accountant librarian dentist firefighter translator gardener"
    " carpenter"
)
_MEMORY_TEMPLATES = (
    "User's {relation} {name} lives in {city}",
    "User's {relation} {name} works as a {job} in {city}",
    "User's {relation} {name} loves {activity}",
    "User's {relation} {name} is allergic to {food}",
    "User went {activity} with {name} in {city}",
    "User wants to visit {city} with their {relation} for {activity}",
    "User's friend {name} cooks {food} every Friday",
    "User met {name}, a {job} from {city}",
    "User is learning {activity} from their {relation} {name}",
    "User avoids {food} since a trip to {city}",
)
_QUESTION_TEMPLATES = (
    "Where does the user's {relation} live?",
    "What does {name} do for a living?",
    "Which hobby does the user share with {name}?",
    "Is anyone in the user's family allergic to {food}?",
    "Who does the user know in {city}?",
    "What does the user's {relation} enjoy doing?",
    "Which food should I avoid when cooking for the user?",
    "Who is the {job} the user met?",
)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        name=rng.choice(_NAMES),
        relation=rng.choice(_RELATIONS),
        city=rng.choice(_CITIES),
        activity=rng.choice(_ACTIVITIES),
        food=rng.choice(_FOODS),
        job=rng.choice(_JOBS),
    )


def memory_texts(count: int, *, seed: int = 13) -> list[str]:
    """``count`` distinct memory texts (the templates allow millions)."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        texts[_fill(rng.choice(_MEMORY_TEMPLATES), rng)] = None
    return list(texts)


def question_texts(count: int, *, seed: int = 31) -> list[str]:
    """``count`` questions as an agent asks them (repeats allowed)."""
    rng = random.Random(seed)
    return [_fill(rng.choice(_QUESTION_TEMPLATES), rng) for _ in range(count)]


async def embed(texts: list[str]) -> Vectors:
    """wordllama vectors of ``texts``, one row each."""
    return np.asarray(await WordLlamaEmbedder().embed(texts), dtype=np.float32)


@dataclass(frozen=True)
class Corpus:
    """The distinct texts rows draw from, and their wordllama vectors."""

    texts: list[str]
    vectors: Vectors

    @classmethod
    async def of(cls, size: int) -> Corpus:
        """A corpus of ``size`` distinct texts."""
        texts = memory_texts(size)
        return cls(texts, await embed(texts))


def _vector_binary(vector: Vectors) -> bytes:
    """pgvector's binary form: dimension and an unused int16, then big-endian float32s."""
    return struct.pack(">HH", len(vector), 0) + vector.astype(">f4").tobytes()


def _rows(corpus: Corpus, users: int, per_user: int, *, seed: int = 7) -> Iterator[list[tuple[object, ...]]]:
    """Rows of ``users`` users with ``per_user`` memories each, ``CHUNK`` at a time."""
    rng = np.random.default_rng(seed)
    total, size = users * per_user, len(corpus.texts)
    picks = rng.permutation(total) % size if total <= size else rng.integers(0, size, total)
    name, dim = WordLlamaEmbedder.name, WordLlamaEmbedder.dimension
    for start in range(0, total, CHUNK):
        chosen = picks[start : start + CHUNK]
        vectors = corpus.vectors[chosen] + rng.normal(0, NOISE, (len(chosen), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield [
            (
                f"m{j}",
                f"user-{j // per_user:04d}",
                corpus.texts[t],
                "fact",
                name,
                dim,
                _vector_binary(v),
                f"ep-{j // 10}",
                f"corr-{j}",
                None,
                CREATED,
                CREATED,
                1,
            )
            for j, t, v in zip(range(start, start + len(chosen)), chosen.tolist(), vectors, strict=True)
        ]


_COLUMNS = (
    "memory_id", "user_id", "text", "kind", "embedder", "dimension", "embedding", "episode_id",
    "correlation_id", "workflow_id", "created_at", "valid_from", "version",
)  # fmt: skip


async def bulk_load(dsn: str, schema: str, table: str, corpus: Corpus, users: int, per_user: int) -> int:
    """COPY ``users`` × ``per_user`` rows into ``schema.table``; rows written."""
    conn = await asyncpg.connect(dsn)
    try:
        vector_schema = await conn.fetchval(
            "SELECT n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE t.typname = 'vector'"
        )
        await conn.set_type_codec(
            "vector", schema=vector_schema, encoder=bytes, decoder=bytes, format="binary"
        )
        written = 0
        for chunk in _rows(corpus, users, per_user):
            await conn.copy_records_to_table(table, schema_name=schema, columns=_COLUMNS, records=chunk)
            written += len(chunk)
        return written
    finally:
        await conn.close()
