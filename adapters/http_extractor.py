"""The http extractor: an LLM behind an OpenAI-compatible ``POST /chat/completions``."""

from __future__ import annotations

import json
from typing import Any

from adapters.errors import EndpointUnavailable
from adapters.http_endpoint import JsonEndpoint
from sagas.memory_extraction.events import Candidate, MemoryKind
from sagas.memory_extraction.extractors import KINDS, make_candidate, unique
from sagas.memory_extraction.ports import AdapterError, Heartbeat
from sagas.memory_extraction.text import tidy


class ExtractorUnavailable(EndpointUnavailable):
    """The http extractor's endpoint failed (connection refused and 5xx are retryable, 4xx are not)."""


class ExtractorResponseInvalid(AdapterError):
    """The http extractor answered, but not with a JSON list of memories."""


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
