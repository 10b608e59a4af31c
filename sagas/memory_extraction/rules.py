"""The rule table of the rule-based extractor: first-person statements and the memories they become.

A :class:`Rule` is data: a pattern matched against a whole clause (case-insensitive, anchored)
and a third-person template filled from the pattern's named groups. The first rule of
:data:`RULES` that matches a clause, in table order, wins; so more specific rules come first.
Identifiers (emails, phone numbers, …) are not clause rules: see ``SCANNERS`` in
:mod:`sagas.memory_extraction.text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sagas.memory_extraction.events import MemoryKind
from sagas.memory_extraction.text import Finding, tidy


@dataclass(frozen=True)
class Rule:
    """One kind of first-person statement and the memory it becomes."""

    name: str
    kind: MemoryKind
    pattern: re.Pattern[str]
    template: str
    attributes: tuple[str, ...] = ()  # named groups copied into the candidate's attributes
    constants: tuple[tuple[str, str], ...] = ()  # fixed attributes
    owner: str = "their"  # how "my" in a captured phrase is written: "their", or "User's" (others' facts)


def rule(
    name: str,
    kind: MemoryKind,
    regex: str,
    template: str,
    *,
    attributes: tuple[str, ...] = (),
    constants: tuple[tuple[str, str], ...] = (),
    owner: str = "their",
) -> Rule:
    """A :class:`Rule` whose ``regex`` must match a whole clause, case-insensitively."""
    pattern = re.compile(rf"^(?:{regex})$", re.IGNORECASE)
    return Rule(name, kind, pattern, template, attributes, constants, owner)


# --- Building blocks ---------------------------------------------------------------------------

I_AM = r"I(?:'m| am)"
ADV = (
    r"(?:(?:really|absolutely|totally|also|just|truly|genuinely|honestly|still|actually|definitely"
    r"|kind of|kinda|do|very much|quite|so|now|currently|recently|finally|originally) )*"
)
NAME = r"(?P<name>(?-i:[A-Z][\w'-]+(?: [A-Z][\w'-]+){0,2}))"
MONTHS = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)"
)
WEEKDAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
SEASONS = r"(?:summer|winter|spring|autumn|fall)"
YEAR = r"(?:19|20)\d{2}"
COUNT = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few|a couple of|\d+)"
ORDINAL = r"\d{1,2}(?:st|nd|rd|th)?"
DAY_MONTH = rf"(?:{ORDINAL}(?: of)? {MONTHS}|{MONTHS} {ORDINAL})(?:,? {YEAR})?"
FUTURE = (
    rf"(?:(?:next|this|this coming|coming) (?:week|weekend|month|year|{SEASONS}|{WEEKDAYS})"
    rf"|in (?:{MONTHS}|{SEASONS}|{YEAR}|{COUNT} (?:days?|weeks?|months?|years?))"
    rf"|on (?:{WEEKDAYS}|{DAY_MONTH}))"
)
PAST = (
    rf"(?:(?:back )?in (?:(?:early|late|mid-?) ?)?(?:{MONTHS}(?: {YEAR})?|{YEAR}|{SEASONS}(?: {YEAR})?)"
    rf"|on {DAY_MONTH}|last (?:week|weekend|month|year|{SEASONS}|{WEEKDAYS})"
    rf"|{COUNT} (?:days?|weeks?|months?|years?) ago|(?:this|earlier this) (?:year|month))"
)
RELATIVES_PLURAL = (
    r"parents|sisters|brothers|siblings|sons|daughters|kids|children|twins|grandparents|grandchildren"
    r"|grandkids|cousins|friends|colleagues|coworkers|roommates|flatmates|dogs|cats|pets"
)
RELATIVES = (
    r"mother|mom|mum|father|dad|sister|brother|wife|husband|partner|spouse|boyfriend|girlfriend"
    r"|fianc[eé]e?|son|daughter|child|baby|grandmother|grandma|granny|grandfather|grandpa|aunt|uncle"
    r"|cousin|niece|nephew|best friend|friend|boss|manager|colleague|coworker|co-worker|roommate"
    r"|flatmate|neighbou?r|stepmother|stepfather|stepson|stepdaughter|dog|cat|puppy|kitten|parrot"
    r"|hamster|horse|rabbit|bunny|turtle|tortoise|pet"
)
RELATION = (
    r"(?P<adj>(?:(?:older|younger|elder|big|little|baby|twin|late|oldest|youngest|eldest|two|three) )*"
    rf"(?:ex-|step-|half-)?)(?P<relation>{RELATIVES_PLURAL}|{RELATIVES})"
)
RELATION_VERBS = (
    r"is|was|are|were|lives|live|works|work|has|have|had|loves|love|likes|like|hates|hate|studies|study"
    r"|teaches|teach|plays|play|moved|got|turned|owns|own|runs|run|speaks|speak|enjoys|enjoy|died"
    r"|passed away|started|retired|graduated|will"
)
PLAN_VERBS = (
    r"visit|travel|move|relocate|start|begin|learn|study|quit|retire|marry|get married|adopt|buy|apply"
    r"|switch|join|open|launch|sell|renovate|run a marathon|climb|hike|emigrate|propose|have a baby"
)
IDENTITY_ADJECTIVES = (
    r"vegetarian|vegan|pescatarian|flexitarian|left-handed|right-handed|married|single|divorced|engaged"
    r"|widowed|separated|retired|unemployed|self-employed|freelance|an introvert|an extrovert|introverted"
    r"|extroverted|christian|catholic|protestant|muslim|jewish|buddhist|hindu|sikh|atheist|agnostic"
    r"|mormon|gay|lesbian|bisexual|queer|asexual|pansexual|transgender|trans|non-binary|nonbinary"
    r"|american|british|english|scottish|welsh|irish|canadian|australian|portuguese|brazilian|spanish"
    r"|french|german|italian|dutch|belgian|swiss|austrian|polish|swedish|norwegian|danish|finnish"
    r"|greek|turkish|russian|ukrainian|indian|pakistani|chinese|japanese|korean|vietnamese|filipino"
    r"|mexican|argentinian|colombian|chilean|peruvian|nigerian|kenyan|south african|egyptian|moroccan"
)
HEALTH_ADJECTIVES = (
    r"diabetic|asthmatic|epileptic|pregnant|lactose intolerant|gluten intolerant|co?eliac|anaemic|anemic"
    r"|autistic|deaf|blind|hard of hearing|colou?r ?blind|sober|in recovery|immunocompromised"
)
CONDITIONS = (
    r"diabetes|asthma|celiac disease|coeliac disease|adhd|autism|epilepsy|depression|anxiety|high blood"
    r" pressure|hypertension|cancer|arthritis|migraines|ibs|crohn's disease|a heart condition|chronic pain"
    r"|long covid|hiv|multiple sclerosis|ms|ptsd|ocd|bipolar disorder|insomnia|sleep apnea|sleep apnoea"
    r"|eczema|psoriasis|endometriosis|fibromyalgia|dyslexia|tinnitus|lupus|a pacemaker|glaucoma"
)
LIFE_EVENTS = (
    r"got married|got engaged|got divorced|graduated|retired|moved|relocated|started|joined|bought|adopted"
    r"|began|finished|quit|lost|turned|became|left|emigrated|changed"
)
MEDICATIONS = (
    r"insulin|antidepressants|medication|meds|blood thinners|metformin|statins|birth control|the pill"
    r"|an inhaler|hormone therapy|chemotherapy|chemo|methadone|prep"
)

# --- The table ---------------------------------------------------------------------------------

# fmt: off
RULES: tuple[Rule, ...] = (
    # Preferences
    rule("fan_of", "preference", rf"{I_AM} {ADV}(?P<deg>a (?:big |huge |massive )?fan) of (?P<obj>.+)",
         "User is {deg} of {obj}"),
    rule("into", "preference", rf"{I_AM} {ADV}into (?P<obj>.+)", "User is into {obj}"),
    rule("likes", "preference",
         rf"I {ADV}(?P<verb>love|like|enjoy|prefer|adore|hate|dislike|detest|loathe) (?P<obj>.+)",
         "User {verbs} {obj}"),
    rule("dislikes", "preference",
         rf"I (?:don't|do not|never) {ADV}(?P<verb>like|enjoy|eat|drink|watch|listen to) (?P<obj>.+)",
         "User does not {verb} {obj}"),
    rule("cannot_stand", "preference", r"I (?:can't|cannot) stand (?P<obj>.+)", "User cannot stand {obj}"),
    rule("favourite", "preference",
         rf"my {ADV}(?:all-time )?favou?rite (?P<what>[\w -]+?) (?P<be>is|are) (?P<obj>.+)",
         "User's favourite {what} {be} {obj}", attributes=("what",)),
    rule("favourite_inverted", "preference",
         rf"(?P<obj>[\w' -]+?) (?P<be>is|are) my {ADV}(?:all-time )?favou?rite (?P<what>[\w -]+)",
         "User's favourite {what} {be} {obj}", attributes=("what",)),
    # Identity
    rule("name", "identity", rf"my name(?:'s| is) {NAME}", "User's name is {name}", attributes=("name",)),
    rule("goes_by", "identity",
         rf"(?:(?:please |you can |everyone |people |friends )?call me|I go by) {NAME}",
         "User goes by {name}", attributes=("name",)),
    rule("married_to", "relation", rf"{I_AM} {ADV}(?P<status>married|engaged) to {NAME}",
         "User is {status} to {name}", attributes=("name",), constants=(("relation", "partner"),)),
    rule("age", "identity", rf"{I_AM} (?P<age>\d{{1,3}})(?: years old| years of age| yo)?",
         "User is {age} years old", attributes=("age",)),
    rule("identity_adjective", "identity", rf"{I_AM} {ADV}(?P<trait>{IDENTITY_ADJECTIVES})",
         "User is {trait}"),
    rule("health_adjective", "health", rf"{I_AM} {ADV}(?P<trait>{HEALTH_ADJECTIVES})", "User is {trait}"),
    rule("from", "identity", rf"{I_AM} {ADV}from (?P<obj>.+)", "User is from {obj}"),
    rule("works", "identity", rf"I {ADV}work (?P<how>as|at|for|in|from) (?P<obj>.+)",
         "User works {how} {obj}"),
    rule("studies", "identity", rf"I {ADV}(?P<verb>study|teach) (?P<obj>.+)", "User {verbs} {obj}"),
    rule("learning", "fact",
         rf"{I_AM} {ADV}(?P<verb>studying|learning|training as|training to be) (?P<obj>.+)",
         "User is {verb} {obj}"),
    rule("speaks", "identity",
         r"I (?:also )?speak (?P<langs>(?-i:[A-Z]\w+)(?:(?:, | and |, and )(?-i:[A-Z]\w+))*)(?: fluently)?",
         "User speaks {langs}"),
    rule("introduces", "identity", rf"{I_AM} {NAME}", "User's name is {name}", attributes=("name",)),
    rule("is_a", "identity",
         rf"{I_AM} {ADV}(?P<obj>(?:a|an) (?!(?:bit|little|lot|tad|mess|wreck|fan|sucker|fool|idiot)\b).+)",
         "User is {obj}"),
    rule("lives", "fact", rf"I {ADV}live (?P<how>in|with|near|on|at) (?P<obj>.+)", "User lives {how} {obj}"),
    rule("grew_up", "fact", r"I grew up (?P<how>in|on|near) (?P<obj>.+)", "User grew up {how} {obj}"),
    # Dates and moves
    rule("birthday", "date", rf"my birthday(?: is|'s) (?:on )?(?P<when>{DAY_MONTH})",
         "User's birthday is on {when}", attributes=("when",)),
    rule("anniversary", "date",
         rf"(?:my|our) (?:wedding )?anniversary(?: is|'s) (?:on )?(?P<when>{DAY_MONTH})",
         "User's anniversary is on {when}", attributes=("when",)),
    rule("born_when", "date", rf"I was born (?P<when>(?:in|on) (?:{DAY_MONTH}|{MONTHS}(?: {YEAR})?|{YEAR}))",
         "User was born {when}", attributes=("when",)),
    rule("born_where_when", "date",
         r"I was born in (?P<where>(?-i:[A-Z][\w'-]*(?: [A-Z][\w'-]*)*)) (?P<when>(?:in|on) .*\d.*)",
         "User was born in {where} {when}", attributes=("when",)),
    rule("born_where", "fact", r"I was born (?:and raised )?in (?P<obj>.+)", "User was born in {obj}"),
    rule("event_dated", "date",
         rf"I {ADV}(?P<event>(?:{LIFE_EVENTS})\b.*?) (?P<when>{PAST})",
         "User {event} {when}", attributes=("when",)),
    rule("moved", "fact", rf"I {ADV}(?:moved|relocated) to (?P<obj>.+)", "User moved to {obj}"),
    rule("lived_since", "fact",
         r"I(?:'ve| have) (?:been living|lived) in (?P<obj>.+?) (?P<since>(?:since|for) .+)",
         "User has lived in {obj} {since}"),
    # Relations
    rule("relation_named", "relation", rf"my {RELATION}(?:'s name is| is called| is named) {NAME}",
         "User's {adj}{relation} is named {name}", attributes=("relation", "name")),
    rule("relation_name_says", "relation",
         rf"my {RELATION},? {NAME},? (?P<predicate>{ADV}(?:{RELATION_VERBS})\b.+)",
         "User's {adj}{relation} {name} {predicate}", attributes=("relation", "name"), owner="User's"),
    rule("relation_says", "relation", rf"my {RELATION} (?P<predicate>{ADV}(?:{RELATION_VERBS})\b.+)",
         "User's {adj}{relation} {predicate}", attributes=("relation",), owner="User's"),
    rule("has_relation_named", "relation",
         rf"I (?:have|'ve got|have got) (?P<count>{COUNT}) {RELATION} (?:named|called) {NAME}",
         "User has {count} {adj}{relation} named {name}", attributes=("relation", "name")),
    rule("has_relation", "relation", rf"I (?:have|'ve got|have got) (?P<count>{COUNT}) {RELATION}",
         "User has {count} {adj}{relation}", attributes=("relation",)),
    # Plans
    rule("planning_to", "plan", rf"{I_AM} {ADV}(?:planning|intending|hoping) to (?P<action>.+)",
         "User plans to {action}"),
    rule("planning_on", "plan", rf"{I_AM} {ADV}planning on (?P<action>.+)", "User is planning on {action}"),
    rule("plans_to", "plan", rf"I {ADV}(?P<verb>plan|intend) to (?P<action>.+)", "User {verbs} to {action}"),
    rule("wants_to", "plan",
         rf"I {ADV}(?P<verb>want|hope|aim) to (?P<action>(?:{PLAN_VERBS})\b.+|.+\b{FUTURE}\b.*)",
         "User {verbs} to {action}"),
    rule("going_to_plan", "plan", rf"{I_AM} (?:going|gonna) to (?P<action>(?:{PLAN_VERBS})\b.+)",
         "User plans to {action}"),
    rule("going_to", "plan", rf"{I_AM} going to (?P<action>.+\b{FUTURE}\b.*)", "User is going to {action}"),
    rule("will_plan", "plan", rf"I(?:'ll| will) {ADV}(?P<action>(?:{PLAN_VERBS})\b.+\b{FUTURE}\b.*)",
         "User plans to {action}"),
    rule("will", "plan", rf"I(?:'ll| will) {ADV}(?P<action>.+\b{FUTURE}\b.*)", "User will {action}"),
    rule("arranged", "plan",
         rf"{I_AM} (?P<action>(?:moving|relocating|travell?ing|flying|visiting|starting|leaving|retiring"
         rf"|getting married|graduating|changing jobs|quitting)\b.+\b{FUTURE}\b.*)", "User is {action}"),
    # Health
    rule("allergic", "health", rf"{I_AM} {ADV}(?:severely |very |mildly |deathly )?allergic to (?P<obj>.+)",
         "User is allergic to {obj}"),
    rule("has_condition", "health",
         rf"I (?:have|'ve got|have got|live with) (?P<obj>(?:(?:a|an|mild|severe|chronic|type [12]|bad) )*"
         rf"(?:{CONDITIONS}|[\w-]+ (?:allergy|allergies|intolerance)|(?:an )?(?:allergy|intolerance) to .+))",
         "User has {obj}"),
    rule("diagnosed", "health", r"I(?: was|'ve been| have been| got) diagnosed with (?P<obj>.+)",
         "User was diagnosed with {obj}"),
    rule("suffers", "health", rf"I {ADV}suffer from (?P<obj>.+)", "User suffers from {obj}"),
    rule("medication", "health", rf"I (?:take|'m on|am on) (?P<obj>(?:{MEDICATIONS})\b.*)",
         "User takes {obj}"),
    rule("recovering", "health", rf"{I_AM} {ADV}recovering from (?P<obj>.+)",
         "User is recovering from {obj}"),
    # Finances
    rule("money_is", "finance",
         r"my (?P<what>(?:annual |monthly |yearly |net |gross )?(?:salary|income|rent|mortgage(?: payment)?"
         r"|take-home pay|credit score|net worth|budget|debt|savings|pension)) (?:is|are) (?P<amount>.*\d.*)",
         "User's {what} is {amount}"),
    rule("earns", "finance",
         r"I (?:earn|make) (?P<amount>(?:about |around |roughly |over |under |almost |nearly )?[$€£¥]?\d.*)",
         "User earns {amount}"),
    rule("owes", "finance", rf"I {ADV}owe (?P<obj>.+)", "User owes {obj}"),
    rule("in_debt", "finance",
         rf"{I_AM} {ADV}(?P<obj>in (?:(?:a lot of|some|serious|deep|credit card|student) )*debt\b.*"
         r"|broke|bankrupt)", "User is {obj}"),
    rule("has_debt", "finance",
         r"I (?:have|'ve got|have got) (?P<obj>.*\b(?:mortgage|loans?|debt|overdraft|savings|pension)\b.*)",
         "User has {obj}"),
    rule("bank_is", "finance", r"my bank is (?P<obj>.+)", "User's bank is {obj}"),
    rule("banks_with", "finance", r"I bank with (?P<obj>.+)", "User banks with {obj}"),
    # Last resort: "... my sister Ana ..." anywhere in a clause names a relative.
    rule("relation_apposition", "relation", rf".*?\bmy {RELATION},? {NAME}(?:\W.*)?",
         "User's {adj}{relation} is named {name}", attributes=("relation", "name")),
)
# fmt: on
"""Every clause rule, most specific first."""


# --- Rendering ---------------------------------------------------------------------------------

KEYWORD_GROUPS = frozenset({"verb", "relation", "adj", "how", "status", "be", "deg", "count"})
"""Groups that hold a word of the pattern itself: lowercased, never checked as free text."""

# fmt: off
NOT_NAMES = frozenset({
    "OK", "Okay", "Fine", "Good", "Sorry", "Back", "Here", "Ready", "Done", "Sure", "Alright", "Glad",
    "Happy", "Not", "So", "Just", "Very", "Really", "The", "And", "But", "It", "He", "She", "They", "We",
    "You", "This", "That", "Is", "Was", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
    "Sunday",
})
"""Capitalised words after "I'm" or "my sister" that are not names."""
VAGUE_STARTS = frozenset({
    "it", "it's", "that", "that's", "this", "these", "those", "them", "they", "him", "her", "us",
    "everything", "something", "anything", "nothing", "everyone", "someone", "anyone", "when", "how",
    "what", "why", "where", "who", "which", "whatever", "here", "there", "so", "too", "very", "such", "lots",
})
"""First words that make a captured phrase too vague to remember ("I love it", "I like that")."""
# fmt: on
# "you", "our", "it": the phrase leans on the conversation (the assistant, or something said before).
_CONTEXTUAL = re.compile(
    r"\b(?:(?i:you|your|yours|yourself|you're|you've|u|ur|we|us|our|ours)|it|them)\b"
    r"|\b(?:that|this|these|those)(?:\s+(?:next|this|on|in|tomorrow|today|tonight)\b|$)"
)
_FIRST_PERSON = re.compile(r"\b(?:(?i:my|me|mine|myself)|I'm|I've|I'll|I'd|I)\b")
# fmt: off
_PRONOUNS: dict[str, dict[str, str]] = {
    "their": {"my": "their", "me": "them", "mine": "theirs", "myself": "themselves", "i'm": "they're",
              "i've": "they've", "i'll": "they'll", "i'd": "they'd", "i": "they"},
    "User's": {"my": "User's", "me": "User", "mine": "User's", "myself": "User", "i'm": "User is",
               "i've": "User has", "i'll": "User will", "i'd": "User would", "i": "User"},
}
# fmt: on
MAX_PHRASE_WORDS = 20


def third_person(verb: str) -> str:
    """``love`` -> ``loves``, ``study`` -> ``studies``, ``teach`` -> ``teaches``."""
    if verb.endswith("y") and verb[-2:-1] not in ("a", "e", "i", "o", "u"):
        return verb[:-1] + "ies"
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    return verb + "s"


def in_third_person(phrase: str, owner: str) -> str:
    """``phrase`` with the speaker's pronouns replaced: "my dog" -> "their dog" or "User's dog"."""
    table = _PRONOUNS[owner]
    return _FIRST_PERSON.sub(lambda m: table[m.group(0).lower()], phrase)


def _plain_phrase(phrase: str) -> bool:
    words = phrase.split()
    first = words[0].strip(",;:!") if words else ""
    return (
        0 < len(words) <= MAX_PHRASE_WORDS
        and (first.lower() not in VAGUE_STARTS or first.isupper())  # "IT" is a field, "it" is vague
        and _CONTEXTUAL.search(phrase) is None
    )


def apply_rule(rule: Rule, clause: str) -> Finding | None:
    """The memory ``rule`` makes of ``clause``, or None when it does not match or says too little."""
    match = rule.pattern.match(clause)
    if match is None:
        return None
    values: dict[str, str] = {}
    for group, raw in match.groupdict().items():
        if group in KEYWORD_GROUPS:
            values[group] = (raw or "").lower()
        elif group == "name":
            if raw.split()[0] in NOT_NAMES:
                return None
            values[group] = raw
        elif raw is None:
            values[group] = ""
        elif not _plain_phrase(tidy(raw)):
            return None
        else:
            values[group] = in_third_person(tidy(raw), rule.owner)
    if "verb" in values:
        values["verbs"] = third_person(values["verb"])
    attributes = {group: values[group].strip() for group in rule.attributes if values.get(group)}
    return Finding(tidy(rule.template.format_map(values)), rule.kind, attributes | dict(rule.constants))


def match_clause(clause: str) -> Finding | None:
    """The memory of the first rule in :data:`RULES` that accepts ``clause``."""
    return next((found for rule in RULES if (found := apply_rule(rule, clause)) is not None), None)
