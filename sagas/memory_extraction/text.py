"""Text helpers of memory extraction: normalisation, content hashes, sentences, sensitivity.

Everything here is pure and deterministic: the same text gives the same hashes, the same
sentences and the same sensitivity verdict on every machine and every run.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sagas.memory_extraction.events import MemoryKind, Polarity

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCTUATION = re.compile(r"[\s.!?,;:…]+$")
_TYPOGRAPHIC = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": " - "})


def clean(text: str) -> str:
    """Unicode-normalised text with straight quotes (``’`` becomes ``'``)."""
    return unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC)


def normalise(text: str) -> str:
    """The form two memories are compared in: casefolded, one space, no trailing punctuation."""
    collapsed = _SPACES.sub(" ", clean(text)).strip()
    return _TRAILING_PUNCTUATION.sub("", collapsed).casefold()


def content_hash(text: str) -> str:
    """SHA-256 hex of :func:`normalise` of ``text``: the key memories are deduplicated by."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def candidate_id_for(hash_hex: str) -> str:
    """A candidate's id: the first 16 hex digits of its content hash (unique within an episode)."""
    return hash_hex[:16]


def tidy(text: str) -> str:
    """One space between words, no trailing punctuation, original case kept."""
    return _TRAILING_PUNCTUATION.sub("", _SPACES.sub(" ", text).strip())


# --- Sentences -------------------------------------------------------------------------------

ASSISTANT_SPEAKERS = frozenset({"assistant", "ai", "bot", "agent", "system", "model", "chatbot"})
"""Speaker labels whose lines are skipped: only what the user says about themself is a memory."""

_SPEAKER = re.compile(r"^\s*(?P<speaker>[A-Za-z][\w.-]*(?: [A-Za-z][\w.-]*)?)\s*:\s+(?P<body>.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def user_sentences(text: str) -> Iterator[str]:
    """The sentences of ``text`` in order, without speaker labels and without assistant lines."""
    for line in clean(text).splitlines():
        match = _SPEAKER.match(line)
        if match is not None:
            if match["speaker"].casefold() in ASSISTANT_SPEAKERS:
                continue
            line = match["body"]
        for sentence in _SENTENCE_END.split(line):
            if sentence.strip():
                yield sentence.strip()


MAX_SENTENCE_CHARS = 400
"""Longer sentences are skipped: they are rarely one plain fact, and they bound the regex work."""

_QUESTION_START = re.compile(
    r"^(?:do|does|did|are|is|was|were|can|could|would|should|will|shall|have|has|had|what|why|how|when"
    r"|where|who|whom|which|whose|may|might|am)\b",
    re.IGNORECASE,
)
# Markers that make a whole sentence hypothetical: "If I moved to Rome, I'd ..." holds no fact.
_HYPOTHETICALS = re.compile(
    r"\b(?:if|unless|suppose|supposing|imagine|wish|wished|kidding|joking|pretend|hypothetically)\b",
    re.IGNORECASE,
)
# Hedges that void only their own clause: in "I moved to Lisbon in May and I'm still getting used
# to it" the move is a fact, whatever the second clause says.
_HEDGES = re.compile(
    r"\b(?:would|could|might|maybe|perhaps|probably|possibly|someday|one day|used to|I'd|wouldn't"
    r"|couldn't|not sure|don't know)\b",
    re.IGNORECASE,
)
_DISCOURSE = re.compile(
    r"^(?:(?:well|oh|so|actually|also|and|but|btw|by the way|honestly|anyway|anyways|yeah|yes|yep|no"
    r"|nope|haha|lol|ok|okay|hi|hey|hello|um|uh|fun fact|plus|besides|sure|right|ah|to be honest|tbh"
    r"|fyi)\b[,!:]?\s+)+",
    re.IGNORECASE,
)
_CLAUSE_SPLIT = re.compile(
    r"\s*;\s*|,?\s+(?:and|but|so|plus|also|then|and also|and then)\s+(?=(?:I|I'm|I've|I'll|my)\b)"
    r"|,\s+(?=(?:I|I'm|I've|I'll|my)\b)",
    re.IGNORECASE,
)
_CLAUSE_TAIL = re.compile(
    r"(?:(?:,\s*|\s+)(?:because|although|though|but|which|who|whereas|even though|so that|while"
    r"|since (?:I|it|we|she|he|they)|and (?:she|he|they|it|we)|as (?:I|it|we))\b|,\s*(?:so|then)\b"
    r"|\s+-\s+|\s*\().*$",
    re.IGNORECASE,
)


_FILLER_END = re.compile(
    r",?\s+(?:too|as well|honestly|haha|lol|though|btw|by the way|now)\W*$", re.IGNORECASE
)


def is_statement(sentence: str) -> bool:
    """False for questions, conditionals, wishes and over-long sentences: no facts in those."""
    return (
        len(sentence) <= MAX_SENTENCE_CHARS
        and not sentence.rstrip().endswith("?")
        and _QUESTION_START.match(_DISCOURSE.sub("", sentence)) is None
        and _HYPOTHETICALS.search(sentence) is None
    )


def is_assertion(clause: str) -> bool:
    """False for a hedged clause ("maybe", "I used to", "would"...): it states no current fact."""
    return _HEDGES.search(clause) is None


def clauses(sentence: str) -> list[str]:
    """The clauses of a statement that may each hold one fact, trimmed of reasons and asides."""
    parts = (_FILLER_END.sub("", _CLAUSE_TAIL.sub("", part)) for part in _CLAUSE_SPLIT.split(sentence))
    return [tidy(_DISCOURSE.sub("", part)) for part in parts if part.strip()]


# --- Identifiers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A memory found in text: third-person ``text``, its kind, attributes, slot and stated date.

    ``slot``, ``value``, ``polarity`` and ``valid_from`` are the candidate's (see
    :class:`~sagas.memory_extraction.events.Candidate`); ``about`` is the named relative it is
    about, as ``(relation, name)``, so a later "she" or "Ana" can be resolved to them.
    """

    text: str
    kind: MemoryKind
    attributes: dict[str, str] = field(default_factory=dict)
    slot: str | None = None
    value: str | None = None
    polarity: Polarity = "holds"
    valid_from: str | None = None
    about: tuple[str, str] | None = None


def _luhn(value: str, _sentence: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _iban(value: str, _sentence: str) -> bool:
    compact = value.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return 15 <= len(compact) <= 34 and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|mobile|cell|call me|text me|reach me|whatsapp|tel|my number|contact number)\b", re.IGNORECASE
)


def _phone(value: str, sentence: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return 8 <= digits <= 15 and (value.startswith("+") or _PHONE_CONTEXT.search(sentence) is not None)


def _any(_value: str, _sentence: str) -> bool:
    return True


def _has_digit(value: str, _sentence: str) -> bool:
    return any(c.isdigit() for c in value)


@dataclass(frozen=True)
class Scanner:
    """One kind of identifier, found anywhere in a sentence; masked ones keep only the last 4 digits."""

    name: str
    pattern: re.Pattern[str]
    template: str
    valid: Callable[[str, str], bool]
    masked: bool = False


# fmt: off
SCANNERS: tuple[Scanner, ...] = (
    Scanner("email",
            re.compile(r"(?P<value>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"),
            "User's email address is {value}", _any),
    Scanner("iban", re.compile(r"\b(?P<value>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b"),
            "User's IBAN is {value}", _iban),
    Scanner("payment_card", re.compile(r"(?<![\d+])(?P<value>(?:\d[ -]?){12,18}\d)(?!\d)"),
            "User has a payment card ending in {last4}", _luhn, masked=True),
    Scanner("ssn",
            re.compile(r"(?i:\b(?:ssn|social security(?: number| no\.?)?))\D{0,20}?"
                       r"(?P<value>\d{3}-?\d{2}-?\d{4})\b"),
            "User's social security number ends in {last4}", _has_digit, masked=True),
    Scanner("passport",
            re.compile(r"(?i:\bpassport(?: number| no\.?| #)?)(?:\s+is|:)?\s+(?P<value>[A-Z0-9]{6,9})\b"),
            "User's passport number is {value}", _has_digit),
    Scanner("phone", re.compile(r"(?<![\w+])(?P<value>\+?(?:\(\d{1,4}\)[ .-]?)?\d[\d .-]{6,}\d)(?!\w)"),
            "User's phone number is {value}", _phone),
)
# fmt: on
"""Identifier scanners, in priority order: a span claimed by one is not scanned by later ones."""


_SOMEONE_ELSES = re.compile(
    r"\b(?:his|her|their)\b|\b(?!(?:here|there|it|that|what|who|where|let|he|she)'s)\w+'s\s+(?:\w+\s+)?"
    r"(?:email|e-mail|phone|mobile|cell|number|card|iban|passport|account|ssn|social security|is\b)",
    re.IGNORECASE,
)
"""Before an identifier, these say it is someone else's ("my sister's email is ...")."""


def find_identifiers(sentence: str) -> list[Finding]:
    """Every identifier of the user's in ``sentence``, in scanner order then position order."""
    claimed: list[tuple[int, int]] = []
    findings: list[Finding] = []
    for scanner in SCANNERS:
        for match in scanner.pattern.finditer(sentence):
            start, end = match.span("value")
            value = match["value"]
            if any(start < e and s < end for s, e in claimed) or not scanner.valid(value, sentence):
                continue
            if _SOMEONE_ELSES.search(sentence, 0, start):
                claimed.append((start, end))
                continue
            claimed.append((start, end))
            last4 = "".join(c for c in value if c.isdigit())[-4:]
            attributes = {"identifier": scanner.name} | ({"last4": last4} if scanner.masked else {})
            shown = value.replace(" ", "") if scanner.name == "iban" else value
            text = scanner.template.format(value=shown, last4=last4)
            findings.append(Finding(text, "identifier", attributes))
    return findings


# --- Sensitivity -----------------------------------------------------------------------------

SENSITIVE_KINDS: dict[str, str] = {"health": "health", "finance": "finance", "identifier": "identifier"}
"""Kinds that are always sensitive, with the reason recorded on the candidate."""

SENSITIVE_TERMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "health",
        re.compile(
            r"\b(?:allerg\w*|diabet\w*|asthma\w*|cancer|tumou?r|depress\w*|anxiety|adhd|autis\w*|epilep\w*"
            r"|pregnan\w*|miscarriage|hiv|aids|hepatitis|therap\w*|psychiatr\w*|medication|meds|insulin"
            r"|antidepressants?|diagnos\w*|disorder|disease|syndrome|surgery|chemo\w*|illness|chronic"
            r"|migraines?|arthritis|hypertension|blood pressure|intoleran\w*|co?eliac|celiac|rehab"
            r"|addict\w*|sober|alcoholi\w*|bipolar|ptsd|ocd|dementia|alzheimer'?s?|disabilit\w*|wheelchair)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "finance",
        re.compile(
            r"\b(?:salary|income|debts?|owes?|owed|mortgage|loans?|bank\w*|iban|credit card|credit score"
            r"|savings|net worth|overdraft|bankrupt\w*|rent)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "religion",
        re.compile(
            r"\b(?:christian|catholic|protestant|muslim|islam\w*|jewish|judaism|buddhis\w*|hindu\w*|sikh"
            r"|atheis\w*|agnostic|mormon|church|mosque|synagogue|religio\w*|pray\w*|bible|quran|torah)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "sexual orientation or gender identity",
        re.compile(
            r"\b(?:gay|lesbian|bisexual|queer|asexual|pansexual|transgender|trans|non-?binary|lgbt\w*)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "political opinion",
        re.compile(
            r"\b(?:democrat|republican|conservative|socialist|communist|labour|tory|libertarian"
            r"|vote[sd]? for|political party)\b",
            re.IGNORECASE,
        ),
    ),
    ("criminal record", re.compile(r"\b(?:arrested|convicted|prison|jail|criminal record)\b", re.IGNORECASE)),
)
"""Words that make any memory sensitive (special categories of personal data), with the reason."""


def sensitivity(kind: MemoryKind, text: str) -> str | None:
    """Why a memory of ``kind`` saying ``text`` is sensitive, or None when it is not."""
    if kind in SENSITIVE_KINDS:
        return SENSITIVE_KINDS[kind]
    return next((reason for reason, terms in SENSITIVE_TERMS if terms.search(text)), None)
