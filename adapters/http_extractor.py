"""The http extractor: an LLM behind an OpenAI-compatible ``POST /chat/completions``."""

from __future__ import annotations

import json
from typing import Any

from adapters.errors import EndpointUnavailable
from adapters.http_endpoint import JsonEndpoint
from sagas.memory_extraction.events import Candidate, MemoryKind, Polarity
from sagas.memory_extraction.extractors import KINDS, make_candidate, unique
from sagas.memory_extraction.ports import AdapterError, Heartbeat
from sagas.memory_extraction.text import tidy
from sagas.memory_extraction.world_time import is_stated_date


class ExtractorUnavailable(EndpointUnavailable):
    """The http extractor's endpoint failed (connection refused and 5xx are retryable, 4xx are not)."""


class ExtractorResponseInvalid(AdapterError):
    """The http extractor answered, but not with a JSON list of memories."""


MEMORY_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["text", "kind", "sensitive", "slot", "value", "polarity", "valid_from"],
        "properties": {
            "text": {"type": "string"},
            "kind": {"enum": sorted(KINDS)},
            "sensitive": {"type": "boolean"},
            "slot": {"type": ["string", "null"]},
            "value": {"type": ["string", "null"]},
            "polarity": {"enum": ["holds", "ended"]},
            "valid_from": {"type": ["string", "null"]},
        },
    },
}
"""What the model is asked to reply (in the system prompt: not every compatible server takes a schema)."""

SYSTEM_PROMPT = (
    "You extract long-term memories about the user from a conversation. Reply with only a JSON array "
    "(no prose, no code fence) that follows this JSON schema: " + json.dumps(MEMORY_SCHEMA) + ". "
    'Write each text as one short third-person sentence starting with "User", e.g. "User is allergic '
    'to peanuts" or "User\'s sister Ana is a nurse". kind is one of: ' + ", ".join(sorted(KINDS)) + ". "
    "Keep only facts the user states about themself, their relations, plans, dates, health, finances "
    "or identifiers; skip questions, hypotheticals, chit-chat and anything the assistant says. Set "
    "sensitive to true for health, finances, identifiers, religion, sexuality and politics. "
    "slot says what the fact is about, so that a later fact can replace it: residence (value: the place "
    "as written), employer (the organisation), job_title (the occupation without article), name, age, "
    "birthday (value --MM-DD), diet (vegetarian, vegan, ...), preference:<object, lower-case, no article> "
    "(value positive or negative: love, like, enjoy and prefer are positive; hate, dislike and can't stand "
    "negative), favourite:<what> (value: the favourite), relation:<relation> for a partner (wife, husband, "
    "partner, spouse, boyfriend, girlfriend, fiance; value: the name), relation:<relation>:<Name> for "
    "another named relative (value: the name), relation:<relation>:<Name>:<aspect> for a fact about them "
    "(aspect residence, employer, job_title, age or diet); null for anything else. polarity is ended when "
    'the user says it no longer holds ("I don\'t live in Lisbon anymore": slot residence, value Lisbon; '
    '"I no longer drink coffee": slot preference:coffee, value null; "I left Google"), else holds. A '
    'correction gives two memories ("I moved from Lisbon to Berlin": residence Berlin holds, residence '
    "Lisbon ended). valid_from is the date the text states for when the fact began (or ended), in ISO "
    "8601 at the precision stated: 2024, 2024-05, 2024-05-03, or without a year --05 or --05-03; null "
    'for relative dates ("last year") and when no date is stated. Reply [] when there is nothing to '
    "remember."
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

    ``slot``, ``value``, ``polarity`` and ``valid_from`` are read tolerantly: missing, null or
    malformed ones (a polarity other than ``holds``/``ended``, a date ``world_time`` cannot
    read) take their defaults; a value without a slot is dropped.

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
        slot, value = _optional_text(item.get("slot")), _optional_text(item.get("value"))
        polarity: Polarity = "ended" if str(item.get("polarity", "")).strip().lower() == "ended" else "holds"
        valid_from = _optional_text(item.get("valid_from"))
        candidates.append(
            make_candidate(
                tidy(text),
                valid_kind,
                flagged_by=reason,
                slot=slot,
                value=value if slot is not None else None,
                polarity=polarity,
                valid_from=valid_from if valid_from is not None and is_stated_date(valid_from) else None,
            )
        )
    return unique(candidates)


def _optional_text(raw: Any) -> str | None:
    """A string field a model may leave out, null, empty, or give as a number: text or None."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    text = str(raw).strip()
    return text if text and text.lower() not in ("null", "none") else None


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
