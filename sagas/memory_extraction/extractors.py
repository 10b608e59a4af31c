"""Extractors: an episode's text in, memory candidates out.

Two come with memsaga, chosen by name with :func:`build_extractor`: ``rules`` (the default:
deterministic patterns of :mod:`sagas.memory_extraction.rules`, no network) and ``http`` (an
OpenAI-compatible chat-completions endpoint). Anything with a ``name`` and an ``extract``
method of the :class:`Extractor` shape plugs in.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, get_args

from memsaga.settings import Settings
from sagas.memory_extraction.endpoints import (
    AdapterError,
    EndpointUnavailable,
    Heartbeat,
    JsonEndpoint,
    UnknownAdapter,
    configured_endpoint,
)
from sagas.memory_extraction.events import Candidate, MemoryKind
from sagas.memory_extraction.rules import match_clause
from sagas.memory_extraction.text import (
    Finding,
    candidate_id_for,
    clauses,
    content_hash,
    find_identifiers,
    is_assertion,
    is_statement,
    sensitivity,
    tidy,
    user_sentences,
)

DEFAULT_EXTRACTOR = "rules"
EXTRACTORS = ("rules", "http")
KINDS: frozenset[str] = frozenset(get_args(MemoryKind))

# --- Errors ---------------------------------------------------------------------------------------


class ExtractorUnavailable(EndpointUnavailable):
    """The http extractor's endpoint failed (connection refused and 5xx are retryable, 4xx are not)."""


class ExtractorResponseInvalid(AdapterError):
    """The http extractor answered, but not with a JSON list of memories."""


# --- Candidates ----------------------------------------------------------------------------------


def make_candidate(
    text: str, kind: MemoryKind, attributes: dict[str, str] | None = None, flagged_by: str | None = None
) -> Candidate:
    """A candidate with its content hash, id and sensitivity (ours, else ``flagged_by``'s)."""
    digest = content_hash(text)
    reason = sensitivity(kind, text) or flagged_by
    return Candidate(
        candidate_id=candidate_id_for(digest),
        text=text,
        kind=kind,
        content_hash=digest,
        sensitive=reason is not None,
        sensitivity_reason=reason,
        attributes=attributes or {},
    )


def unique(candidates: list[Candidate]) -> list[Candidate]:
    """``candidates`` without repeats of a content hash, first occurrence kept."""
    seen: dict[str, Candidate] = {}
    for candidate in candidates:
        seen.setdefault(candidate.content_hash, candidate)
    return list(seen.values())


class Extractor(Protocol):
    """Finds memory candidates in an episode's text; ``name`` is recorded with what it found."""

    name: str

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]: ...


# --- Rules ---------------------------------------------------------------------------------------


def find_memories(text: str) -> list[Finding]:
    """Every fact the rule table finds in ``text``, in order (repeats included)."""
    findings: list[Finding] = []
    for sentence in user_sentences(text):
        if is_statement(sentence):
            found = (match_clause(clause) for clause in clauses(sentence) if is_assertion(clause))
            findings.extend(finding for finding in found if finding is not None)
            findings.extend(find_identifiers(sentence))
    return findings


class RuleBasedExtractor:
    """Deterministic, offline extraction of first-person facts with the rule table."""

    name: str = "rules"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        """Candidates for the facts in ``text``: same text, same candidates, ids and order."""
        if heartbeat is not None:
            heartbeat()
        return unique([make_candidate(f.text, f.kind, f.attributes) for f in find_memories(text)])


# --- HTTP ----------------------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You extract long-term memories about the user from a conversation. Reply with only a JSON array "
    '(no prose, no code fence) of objects {"text": string, "kind": string, "sensitive": boolean}. '
    'Write each text as one short third-person sentence starting with "User", e.g. "User is allergic '
    'to peanuts" or "User\'s sister Ana is a nurse". kind is one of: ' + ", ".join(sorted(KINDS)) + ". "
    "Keep only facts the user states about themself, their relations, plans, dates, health, finances "
    "or identifiers; skip questions, hypotheticals, chit-chat and anything the assistant says. Set "
    "sensitive to true for health, finances, identifiers, religion, sexuality and politics. Reply [] "
    "when there is nothing to remember."
)
LIST_KEYS = ("memories", "candidates", "items", "facts")


class HttpExtractor:
    """Extraction by an LLM behind an OpenAI-compatible ``POST /chat/completions``."""

    def __init__(self, endpoint: JsonEndpoint, *, model: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self.name = f"http:{model}"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        """Candidates the model proposes. :raises ExtractorUnavailable, ExtractorResponseInvalid:"""
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        }
        answer = await self.endpoint.post(
            "chat/completions",
            body,
            heartbeat=heartbeat,
            unavailable=ExtractorUnavailable,
            invalid=ExtractorResponseInvalid,
        )
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ExtractorResponseInvalid(f"no choices[0].message.content in {str(answer)[:200]!r}") from exc
        if not isinstance(content, str):
            raise ExtractorResponseInvalid(f"the message content is not text: {content!r}")
        return parse_memories(content)


def parse_memories(content: str) -> list[Candidate]:
    """Candidates from a model's reply: a JSON list, maybe fenced or wrapped in an object.

    :raises ExtractorResponseInvalid: when the reply holds no such list.
    """
    candidates = []
    for item in _memory_list(_load_json(content)):
        if isinstance(item, str):
            item = {"text": item}
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ExtractorResponseInvalid(f"a memory without text: {item!r}")
        kind = str(item.get("kind", "fact")).strip().lower()
        flagged = str(item.get("sensitive", False)).strip().lower() in ("true", "yes", "1")
        valid_kind: MemoryKind = kind if kind in KINDS else "fact"  # type: ignore[assignment]
        reason = "flagged by the extractor" if flagged else None
        candidates.append(make_candidate(tidy(text), valid_kind, flagged_by=reason))
    return unique(candidates)


def _load_json(content: str) -> Any:
    stripped = content.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        return json.loads(stripped)
    except ValueError:
        start, end = stripped.find("["), stripped.rfind("]")
        if 0 <= start < end:
            try:
                return json.loads(stripped[start : end + 1])
            except ValueError:
                pass
    raise ExtractorResponseInvalid(f"the extractor's reply is not JSON: {content[:200]!r}")


def _memory_list(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return [data]
    if isinstance(data, dict):
        lists = [data[key] for key in LIST_KEYS if isinstance(data.get(key), list)]
        lists = lists or [value for value in data.values() if isinstance(value, list)]
        if len(lists) == 1:
            return list(lists[0])
    raise ExtractorResponseInvalid(f"expected a JSON list of memories, got {str(data)[:200]!r}")


def build_extractor(spec: str, settings: Settings) -> Extractor:
    """The extractor named ``spec`` ("rules" or "http"). :raises UnknownAdapter, AdapterNotConfigured:"""
    if spec == "rules":
        return RuleBasedExtractor()
    if spec == "http":
        endpoint = configured_endpoint(
            "extractor",
            "MEMSAGA_LLM",
            settings.llm_base_url,
            settings.llm_api_key,
            settings.http_timeout_seconds,
        )
        return HttpExtractor(endpoint, model=settings.llm_model)
    raise UnknownAdapter("extractor", spec, EXTRACTORS)
