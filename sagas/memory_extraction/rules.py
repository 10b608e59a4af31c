"""The rule table of the rule-based extractor: first-person statements and the memories they become.

A :class:`Rule` is data: a pattern matched against a whole clause (case-insensitive, anchored),
a third-person template filled from the pattern's named groups, and a slot template saying what
the memory is about (``residence``, ``preference:{thing}``, ``relation:{whose}:{aspect}``, …)
with the value it holds and whether the statement says it holds or ended. The first rule of
:data:`RULES` that matches a clause, in table order, wins; so more specific rules come first.
Identifiers (emails, phone numbers, …) are not clause rules: see ``SCANNERS`` in
:mod:`sagas.memory_extraction.text`. Slot conventions are in ``docs/extractors.md``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from string import Formatter

from sagas.memory_extraction.dates import month_day, stated_date
from sagas.memory_extraction.events import MemoryKind, Polarity
from sagas.memory_extraction.text import Finding, tidy


@dataclass(frozen=True)
class Also:
    """A second memory one statement makes ("I moved from Lisbon to Berlin": Lisbon ended)."""

    template: str
    kind: MemoryKind
    slot: str | None = None
    value: str | None = None
    polarity: Polarity = "holds"


@dataclass(frozen=True)
class Rule:
    """One kind of first-person statement and the memory it becomes."""

    name: str
    kind: MemoryKind
    regex: str  # the whole-clause pattern's source, compiled at its first use (``pattern``)
    template: str
    attributes: tuple[str, ...] = ()  # named groups copied into the candidate's attributes
    constants: tuple[tuple[str, str], ...] = ()  # fixed attributes
    owner: str = "their"  # how "my" in a captured phrase is written: "their", or "User's" (others' facts)
    slot: str | None = None  # slot template over groups and slot_keys(); a key it lacks: no slot
    value: str | None = None  # value template, filled like the slot
    polarity: Polarity = "holds"
    dated: bool = True  # valid_from is a date stated in the clause (False: plans, recurring dates)
    dated_kind: MemoryKind | None = None  # the kind when the optional ``when`` group matched
    needs_slot: bool = False  # without its slot the clause is not this rule's ("I'm not a morning person")
    also: tuple[Also, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled pattern (compiled once, at first use: compiling every rule at import
        took about 0.1 s, which every command paid, extracting or not)."""
        return _compiled(self.regex)


@functools.cache
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)


def rule(
    name: str,
    kind: MemoryKind,
    regex: str,
    template: str,
    *,
    attributes: tuple[str, ...] = (),
    constants: tuple[tuple[str, str], ...] = (),
    owner: str = "their",
    slot: str | None = None,
    value: str | None = None,
    polarity: Polarity = "holds",
    dated: bool = True,
    dated_kind: MemoryKind | None = None,
    needs_slot: bool = False,
    also: tuple[Also, ...] = (),
) -> Rule:
    """A :class:`Rule` whose ``regex`` must match a whole clause, case-insensitively."""
    return Rule(
        name, kind, rf"^(?:{regex})$", template, attributes, constants, owner, slot, value, polarity, dated,
        dated_kind, needs_slot, also,
    )  # fmt: skip


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
NUMERIC_DATE = (
    r"(?:(?:19|20)\d{2}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/(?:19|20)\d{2}|\d{1,2}\.\d{1,2}\.(?:19|20)\d{2})"
)
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
    rf"|on (?:{DAY_MONTH}|the {DAY_MONTH}|{NUMERIC_DATE})"
    rf"|last (?:week|weekend|month|year|{SEASONS}|{WEEKDAYS})"
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
NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
    r"|seventeen|eighteen|nineteen|twenty"
)
DIETS = r"vegetarian|vegan|pescatarian|pescetarian|flexitarian|plant-based"
DRINKS = r"coffee|tea|alcohol|beer|wine|soda|coke|energy drinks|caffeine|milk"
FOODS = r"meat|red meat|fish|dairy|sugar|gluten|bread|chocolate|junk food|fast food|carbs|pork|beef|chicken"
ORG_NAME = r"(?:the )?(?-i:[A-Z0-9][\w&'.-]*)(?: (?:(?-i:[A-Z0-9][\w&'.-]*)|of|de|and|&))*"
NEGATED = r"I(?: don't| do not| no longer|'m not| am not|'m no longer| am no longer)"
ANYMORE = r"(?:,? (?:anymore|any more|any longer))?"
WHEN = rf"(?: (?P<when>{PAST}))?"  # an optional date at the end of a clause
WORK = rf"I(?: {ADV}work|'m {ADV}working| am {ADV}working)"

# --- The table ---------------------------------------------------------------------------------

# Slot templates name groups of the pattern or SLOT_KEYS derived from them (see slot_keys):
# {thing} a preference's object, {sentiment} positive/negative, {place}, {org}, {occupation},
# {diet}, {who} / {whose} a relative, {aspect} / {aspect_value} what a fact about them says.
POSITIVE, NEGATIVE = "positive", "negative"
PREF = "preference:{thing}"
FAVOURITE = "favourite:{what_key}"

# fmt: off
RULES: tuple[Rule, ...] = (
    # Preferences
    rule("not_fan_of", "preference",
         rf"{I_AM} not {ADV}(?P<deg>(?:a (?:big |huge |massive )?fan of|into)) (?P<obj>.+)",
         "User is not {deg} {obj}", slot=PREF, value=NEGATIVE),
    rule("fan_of", "preference", rf"{I_AM} {ADV}(?P<deg>a (?:big |huge |massive )?fan) of (?P<obj>.+)",
         "User is {deg} of {obj}", slot=PREF, value=POSITIVE),
    rule("into", "preference",
         rf"{I_AM} {ADV}(?P<deg>into|obsessed with|passionate about|crazy about|mad about) (?P<obj>.+)",
         "User is {deg} {obj}", slot=PREF, value=POSITIVE),
    rule("likes", "preference",
         rf"I {ADV}(?P<verb>love|like|enjoy|prefer|adore|hate|dislike|detest|loathe) (?P<obj>.+)",
         "User {verbs} {obj}", slot=PREF, value="{sentiment}"),
    rule("no_longer_consumes", "preference",
         rf"I no longer {ADV}(?P<verb>drink|eat|smoke|watch|play|use|buy) (?P<obj>.+?){ANYMORE}",
         "User no longer {verbs} {obj}", slot=PREF, polarity="ended"),
    rule("consumes_anymore", "preference",
         r"I (?:don't|do not) (?P<verb>drink|eat|smoke|watch|play|use|buy) (?P<obj>.+?),?"
         r" (?:anymore|any more|any longer)",
         "User no longer {verbs} {obj}", slot=PREF, polarity="ended"),
    rule("stopped_consuming", "preference",
         rf"I {ADV}(?:stopped|quit|gave up) (?P<gerund>drinking|eating|smoking|watching|playing|using|buying)"
         rf" (?P<obj>.+?){WHEN}",
         "User no longer {verbs} {obj}", attributes=("when",), slot=PREF, polarity="ended"),
    rule("gave_up_drink", "preference",
         rf"I {ADV}(?:quit|gave up|stopped|cut out) (?P<obj>{DRINKS}){WHEN}",
         "User no longer drinks {obj}", attributes=("when",), slot=PREF, polarity="ended"),
    rule("gave_up_food", "preference",
         rf"I {ADV}(?:quit|gave up|stopped|cut out) (?P<obj>{FOODS}){WHEN}",
         "User no longer eats {obj}", attributes=("when",), slot=PREF, polarity="ended"),
    rule("dislikes", "preference",
         rf"I {ADV}(?:don't|do not|never) {ADV}(?P<verb>like|enjoy|eat|drink|watch|listen to) (?P<obj>.+)",
         "User does not {verb} {obj}", slot=PREF, value=NEGATIVE),
    rule("cannot_stand", "preference", r"I (?:can't|cannot) stand (?P<obj>.+)", "User cannot stand {obj}",
         slot=PREF, value=NEGATIVE),
    rule("favourite", "preference",
         rf"my {ADV}(?:all-time )?favou?rite (?P<what>[\w -]+?) (?P<be>is|are) (?P<obj>.+)",
         "User's favourite {what} {be} {obj}", attributes=("what",), slot=FAVOURITE, value="{favourite}"),
    rule("favourite_inverted", "preference",
         rf"(?P<obj>[\w' -]+?) (?P<be>is|are) my {ADV}(?:all-time )?favou?rite (?P<what>[\w -]+)",
         "User's favourite {what} {be} {obj}", attributes=("what",), slot=FAVOURITE, value="{favourite}"),
    # Identity
    rule("name", "identity", rf"my name(?:'s| is) {NAME}", "User's name is {name}", attributes=("name",),
         slot="name", value="{name}"),
    rule("goes_by", "identity",
         rf"(?:(?:please |you can |everyone |people |friends )?call me|I go by) {NAME}",
         "User goes by {name}", attributes=("name",)),
    rule("married_to", "relation", rf"{I_AM} {ADV}(?P<status>married) to {NAME}",
         "User is {status} to {name}", attributes=("name",), constants=(("relation", "partner"),),
         slot="relation:spouse", value="{name}"),
    rule("engaged_to", "relation", rf"{I_AM} {ADV}(?P<status>engaged) to {NAME}",
         "User is {status} to {name}", attributes=("name",), constants=(("relation", "partner"),),
         slot="relation:fiance", value="{name}"),
    rule("age", "identity", rf"{I_AM} (?P<age>\d{{1,3}})(?: years old| years of age| yo)?",
         "User is {age} years old", attributes=("age",), slot="age", value="{age}"),
    rule("diet_ended", "identity", rf"{I_AM} (?:not|no longer) {ADV}(?P<trait>{DIETS}){ANYMORE}",
         "User is no longer {trait}", slot="diet", value="{diet}", polarity="ended"),
    rule("diet_since", "identity", rf"I(?:'ve| have) been (?P<trait>{DIETS}) (?P<since>(?:since|for) .+)",
         "User has been {trait} {since}", slot="diet", value="{diet}"),
    rule("went_diet", "identity",
         rf"I {ADV}(?P<past>went|became|turned) (?P<trait>{DIETS}){WHEN}",
         "User {past} {trait} {when}", attributes=("when",), slot="diet", value="{diet}"),
    rule("a_diet", "identity", rf"{I_AM} {ADV}a (?P<trait>{DIETS})", "User is a {trait}", slot="diet",
         value="{diet}"),
    rule("identity_adjective", "identity", rf"{I_AM} {ADV}(?P<trait>{IDENTITY_ADJECTIVES})",
         "User is {trait}", slot="diet", value="{diet}"),
    rule("health_adjective", "health", rf"{I_AM} {ADV}(?P<trait>{HEALTH_ADJECTIVES})", "User is {trait}"),
    rule("from", "identity", rf"{I_AM} {ADV}from (?P<obj>.+)", "User is from {obj}"),
    # Work: where (employer) and as what (job_title)
    rule("no_longer_works", "identity",
         rf"{NEGATED} {ADV}(?:work|working) (?P<how>at|for) (?P<obj>.+?){ANYMORE}",
         "User no longer works {how} {obj}", slot="employer", value="{org}", polarity="ended"),
    rule("quit_job", "identity",
         rf"I {ADV}(?P<past>quit|left) my (?P<job>job|position|role) (?:at|with) (?P<obj>.+?){WHEN}",
         "User {past} their {job} at {obj} {when}", attributes=("when",), slot="employer", value="{org}",
         polarity="ended", dated_kind="date"),
    rule("resigned", "identity",
         rf"I {ADV}(?P<past>resigned|retired) from (?P<obj>{ORG_NAME}){WHEN}",
         "User {past} from {obj} {when}", attributes=("when",), slot="employer", value="{org}",
         polarity="ended", dated_kind="date"),
    rule("left_employer", "identity", rf"I {ADV}left (?P<obj>{ORG_NAME}){WHEN}",
         "User left {obj} {when}", attributes=("when",), slot="employer", value="{org}", polarity="ended",
         dated_kind="date"),
    rule("works_as", "identity", rf"{WORK} (?P<how>as) (?P<obj>.+)", "User works {how} {obj}",
         slot="job_title", value="{occupation}"),
    rule("works_at", "identity", rf"{WORK} (?P<how>at|for) (?P<obj>.+)", "User works {how} {obj}",
         slot="employer", value="{org}"),
    rule("employed", "identity", rf"{I_AM} {ADV}employed (?P<how>by|at) (?P<obj>.+)",
         "User is employed {how} {obj}", slot="employer", value="{org}"),
    rule("works", "identity", rf"{WORK} (?P<how>in|from) (?P<obj>.+)", "User works {how} {obj}"),
    rule("worked_as_since", "identity",
         r"I(?:'ve| have) (?:been working|worked) (?P<how>as) (?P<obj>.+?) (?P<since>(?:since|for) .+)",
         "User has worked {how} {obj} {since}", slot="job_title", value="{occupation}"),
    rule("worked_at_since", "identity",
         r"I(?:'ve| have) (?:been working|worked) (?P<how>at|for) (?P<obj>.+?) (?P<since>(?:since|for) .+)",
         "User has worked {how} {obj} {since}", slot="employer", value="{org}"),
    rule("joined", "identity", rf"I {ADV}joined (?P<obj>{ORG_NAME}){WHEN}",
         "User joined {obj} {when}", attributes=("when",), slot="employer", value="{org}", dated_kind="date"),
    rule("started_job", "identity",
         rf"I {ADV}(?P<event>(?:started|began) (?:(?:a new job|a job|my new job|working|work|a new position"
         rf"|an internship) (?:at|with|for)|at) (?P<obj>{ORG_NAME})){WHEN}",
         "User {event} {when}", attributes=("when",), slot="employer", value="{org}", dated_kind="date"),
    rule("got_job", "identity",
         rf"I {ADV}(?P<event>got (?:a|a new|my first|my dream) job (?:at|with) (?P<obj>.+?)){WHEN}",
         "User {event} {when}", attributes=("when",), slot="employer", value="{org}", dated_kind="date"),
    rule("studies", "identity", rf"I {ADV}(?P<verb>study|teach) (?P<obj>.+)", "User {verbs} {obj}"),
    rule("learning", "fact",
         rf"{I_AM} {ADV}(?P<verb>studying|learning|training as|training to be) (?P<obj>.+)",
         "User is {verb} {obj}"),
    rule("speaks", "identity",
         r"I (?:also )?speak (?P<langs>(?-i:[A-Z]\w+)(?:(?:, | and |, and )(?-i:[A-Z]\w+))*)(?: fluently)?",
         "User speaks {langs}"),
    rule("introduces", "identity", rf"{I_AM} {NAME}", "User's name is {name}", attributes=("name",),
         slot="name", value="{name}"),
    rule("no_longer_a", "identity", rf"{I_AM} no longer {ADV}(?P<obj>(?:a|an) .+?){ANYMORE}",
         "User is no longer {obj}", slot="job_title", value="{occupation}", polarity="ended",
         needs_slot=True),
    rule("not_a_anymore", "identity",
         rf"{I_AM} not {ADV}(?P<obj>(?:a|an) .+?),? (?:anymore|any more|any longer)",
         "User is no longer {obj}", slot="job_title", value="{occupation}", polarity="ended",
         needs_slot=True),
    rule("is_a", "identity",
         rf"{I_AM} {ADV}(?P<obj>(?:a|an) (?!(?:bit|little|lot|tad|mess|wreck|fan|sucker|fool|idiot)\b).+)",
         "User is {obj}", slot="job_title", value="{occupation}"),
    # Where the user lives
    rule("no_longer_lives", "fact", rf"{NEGATED} {ADV}(?:live|living) in (?P<obj>.+?){ANYMORE}",
         "User no longer lives in {obj}", slot="residence", value="{place}", polarity="ended"),
    rule("lives_in", "fact", rf"I(?: {ADV}live|'m {ADV}living| am {ADV}living) (?P<how>in) (?P<obj>.+)",
         "User lives {how} {obj}", slot="residence", value="{place}"),
    rule("based_in", "fact", rf"{I_AM} {ADV}based in (?P<obj>.+)", "User is based in {obj}",
         slot="residence", value="{place}"),
    rule("lives", "fact", rf"I {ADV}live (?P<how>with|near|on|at) (?P<obj>.+)", "User lives {how} {obj}"),
    rule("grew_up", "fact", r"I grew up (?P<how>in|on|near) (?P<obj>.+)", "User grew up {how} {obj}"),
    rule("moved_from_to", "fact",
         rf"I {ADV}(?P<past>moved(?: back)?|relocated) from (?P<origin>.+?) to (?P<obj>.+?){WHEN}"
         r"(?: for .+)?",
         "User {past} to {obj} {when}", attributes=("when",), slot="residence", value="{place}",
         dated_kind="date",
         also=(Also("User no longer lives in {origin}", "fact", "residence", "{origin_place}", "ended"),)),
    rule("moved_dated", "date",
         rf"I {ADV}(?P<past>moved(?: back)?|relocated) to (?P<obj>.+?) (?P<when>{PAST})",
         "User {past} to {obj} {when}", attributes=("when",), slot="residence", value="{place}"),
    # Dates and moves
    rule("birthday", "date", rf"my birthday(?: is|'s) (?:on )?(?P<when>(?:the )?{DAY_MONTH})",
         "User's birthday is on {when}", attributes=("when",), slot="birthday", value="{month_day}",
         dated=False),
    rule("anniversary", "date",
         rf"(?:my|our) (?:wedding )?anniversary(?: is|'s) (?:on )?(?P<when>{DAY_MONTH})",
         "User's anniversary is on {when}", attributes=("when",), dated=False),
    rule("born_when", "date",
         rf"I was born (?P<when>(?:in|on) (?:the )?"
         rf"(?:{DAY_MONTH}|{NUMERIC_DATE}|{MONTHS}(?: {YEAR})?|{YEAR}))",
         "User was born {when}", attributes=("when",), slot="birthday", value="{month_day}"),
    rule("born_where_when", "date",
         r"I was born in (?P<where>(?-i:[A-Z][\w'-]*(?: [A-Z][\w'-]*)*)) (?P<when>(?:in|on) .*\d.*)",
         "User was born in {where} {when}", attributes=("when",)),
    rule("born_where", "fact", r"I was born (?:and raised )?in (?P<obj>.+)", "User was born in {obj}"),
    rule("turned", "identity", rf"I {ADV}turned (?P<age>\d{{1,3}}){WHEN}",
         "User turned {age} {when}", attributes=("when",), slot="age", value="{age}", dated_kind="date"),
    rule("event_dated", "date",
         rf"I {ADV}(?P<event>(?:{LIFE_EVENTS})\b.*?) (?P<when>{PAST})",
         "User {event} {when}", attributes=("when",)),
    rule("moved", "fact", rf"I {ADV}(?:moved(?: back)?|relocated) to (?P<obj>.+)", "User moved to {obj}",
         slot="residence", value="{place}"),
    rule("lived_since", "fact",
         r"I(?:'ve| have) (?:been living|lived) in (?P<obj>.+?) (?P<since>(?:since|for) .+)",
         "User has lived in {obj} {since}", slot="residence", value="{place}"),
    # Relations
    rule("relation_named", "relation", rf"my {RELATION}(?:'s name is| is called| is named) {NAME}",
         "User's {adj}{relation} is named {name}", attributes=("relation", "name"),
         slot="relation:{who}", value="{name}"),
    rule("is_my_relation", "relation", rf"{NAME} is my {RELATION}",
         "User's {adj}{relation} is named {name}", attributes=("relation", "name"),
         slot="relation:{who}", value="{name}"),
    rule("relation_is_name", "relation",
         rf"my {RELATION} is (?!(?:{IDENTITY_ADJECTIVES}|{HEALTH_ADJECTIVES})\b){NAME}",
         "User's {adj}{relation} is {name}", attributes=("relation", "name"),
         slot="relation:{who}", value="{name}"),
    rule("relation_name_says", "relation",
         rf"my {RELATION},? {NAME},? (?P<predicate>{ADV}(?:{RELATION_VERBS})\b.+)",
         "User's {adj}{relation} {name} {predicate}", attributes=("relation", "name"), owner="User's",
         slot="relation:{whose}:{aspect}", value="{aspect_value}"),
    rule("relation_says", "relation", rf"my {RELATION} (?P<predicate>{ADV}(?:{RELATION_VERBS})\b.+)",
         "User's {adj}{relation} {predicate}", attributes=("relation",), owner="User's"),
    rule("has_relation_named", "relation",
         rf"I (?:have|'ve got|have got) (?P<count>{COUNT}) {RELATION} (?:named|called) {NAME}",
         "User has {count} {adj}{relation} named {name}", attributes=("relation", "name"),
         slot="relation:{who}", value="{name}"),
    rule("has_relation", "relation", rf"I (?:have|'ve got|have got) (?P<count>{COUNT}) {RELATION}",
         "User has {count} {adj}{relation}", attributes=("relation",)),
    # Plans: about the future, so no valid_from and no slot (nothing has changed yet)
    rule("planning_to", "plan", rf"{I_AM} {ADV}(?:planning|intending|hoping) to (?P<action>.+)",
         "User plans to {action}", dated=False),
    rule("planning_on", "plan", rf"{I_AM} {ADV}planning on (?P<action>.+)", "User is planning on {action}",
         dated=False),
    rule("plans_to", "plan", rf"I {ADV}(?P<verb>plan|intend) to (?P<action>.+)", "User {verbs} to {action}",
         dated=False),
    rule("wants_to", "plan",
         rf"I {ADV}(?P<verb>want|hope|aim) to (?P<action>(?:{PLAN_VERBS})\b.+|.+\b{FUTURE}\b.*)",
         "User {verbs} to {action}", dated=False),
    rule("going_to_plan", "plan", rf"{I_AM} (?:going|gonna) to (?P<action>(?:{PLAN_VERBS})\b.+)",
         "User plans to {action}", dated=False),
    rule("going_to", "plan", rf"{I_AM} going to (?P<action>.+\b{FUTURE}\b.*)", "User is going to {action}",
         dated=False),
    rule("will_plan", "plan", rf"I(?:'ll| will) {ADV}(?P<action>(?:{PLAN_VERBS})\b.+\b{FUTURE}\b.*)",
         "User plans to {action}", dated=False),
    rule("will", "plan", rf"I(?:'ll| will) {ADV}(?P<action>.+\b{FUTURE}\b.*)", "User will {action}",
         dated=False),
    rule("arranged", "plan",
         rf"{I_AM} (?P<action>(?:moving|relocating|travell?ing|flying|visiting|starting|leaving|retiring"
         rf"|getting married|graduating|changing jobs|quitting)\b.+\b{FUTURE}\b.*)", "User is {action}",
         dated=False),
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
         "User's {adj}{relation} is named {name}", attributes=("relation", "name"),
         slot="relation:{who}", value="{name}"),
)
# fmt: on
"""Every clause rule, most specific first."""


# --- Rendering ---------------------------------------------------------------------------------

KEYWORD_GROUPS = frozenset(
    {"verb", "relation", "adj", "how", "status", "be", "deg", "count", "past", "gerund", "job"}
)
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


def apply_rule(rule: Rule, clause: str) -> list[Finding]:
    """The memories ``rule`` makes of ``clause``: none when it does not match or says too little."""
    match = rule.pattern.match(clause)
    if match is None:
        return []
    values: dict[str, str] = {}
    for group, raw in match.groupdict().items():
        if group in KEYWORD_GROUPS:
            values[group] = (raw or "").lower()
        elif group == "name":
            if raw.split()[0] in NOT_NAMES:
                return []
            values[group] = raw
        elif raw is None:
            values[group] = ""
        elif not _plain_phrase(tidy(raw)):
            return []
        else:
            values[group] = in_third_person(tidy(raw), rule.owner)
    if values.get("gerund"):
        values["verb"] = GERUNDS[values["gerund"]]
    if "verb" in values:
        values["verbs"] = third_person(values["verb"])
    keys = values | slot_keys(values)
    slot, value = slot_and_value(rule.slot, rule.value, keys)
    if slot is None and rule.needs_slot:
        return []
    valid_from = stated_date(clause) if rule.dated and _FUTURE_HINT.search(clause) is None else None
    kind = rule.dated_kind if rule.dated_kind is not None and values.get("when") else rule.kind
    attributes = {group: values[group].strip() for group in rule.attributes if values.get(group)}
    about = _about(values)
    found = [
        Finding(
            tidy(rule.template.format_map(values)), kind, attributes | dict(rule.constants),
            slot, value, rule.polarity, valid_from, about,
        )
    ]  # fmt: skip
    for also in rule.also:
        also_slot, also_value = slot_and_value(also.slot, also.value, keys)
        text = tidy(also.template.format_map(values))
        found.append(Finding(text, also.kind, {}, also_slot, also_value, also.polarity, valid_from))
    return found


def match_clause(clause: str) -> list[Finding]:
    """The memories of the first rule in :data:`RULES` that accepts ``clause`` (none: ``[]``)."""
    return next((found for rule in RULES if (found := apply_rule(rule, clause))), [])


# --- Slots ---------------------------------------------------------------------------------------

# fmt: off
OCCUPATIONS = frozenset(str.split("""
accountant actor actress administrator analyst architect artist assistant attorney auditor author baker
banker barber barista bartender biologist builder butcher carer caregiver carpenter cashier ceo chef
chemist cleaner clerk coach consultant contractor cook counsellor counselor courier dentist designer
developer dietitian director doctor driver economist editor electrician engineer entrepreneur
executive farmer firefighter florist founder freelancer gardener hairdresser historian hygienist illustrator
intern interpreter janitor journalist judge lawyer lecturer librarian mathematician mechanic midwife
musician nanny nurse nutritionist officer optician painter paralegal paramedic pastor pharmacist
photographer physician physicist physiotherapist pilot plumber policeman policewoman priest producer
professor programmer psychiatrist psychologist rabbi realtor receptionist recruiter researcher
salesman saleswoman scientist secretary singer soldier student surgeon surveyor tailor teacher
technician therapist translator trainer tutor vet veterinarian waiter waitress writer worker
"""))
"""Head nouns of occupations: "I'm a [senior] engineer" has a job_title, "I'm a morning person" none."""
RELATION_KEYS: dict[str, str] = {
    "mom": "mother", "mum": "mother", "dad": "father", "grandma": "grandmother", "granny": "grandmother",
    "grandpa": "grandfather", "fiancé": "fiance", "fiancée": "fiance", "fiancee": "fiance",
    "coworker": "colleague", "co-worker": "colleague", "neighbor": "neighbour", "bunny": "rabbit",
}
"""Words of one relation written one way in slots: "my mom Linda" and "my mother Linda" are one person."""
PARTNERS = frozenset({"wife", "husband", "partner", "spouse", "boyfriend", "girlfriend", "fiance"})
"""One at a time: their slot is ``relation:wife`` (value: the name), not ``relation:wife:<Name>``."""
FEMALE = frozenset({
    "mother", "mom", "mum", "sister", "wife", "girlfriend", "daughter", "grandmother", "grandma", "granny",
    "aunt", "niece", "fiancée", "fiancee", "stepmother", "stepdaughter",
})
MALE = frozenset({
    "father", "dad", "brother", "husband", "boyfriend", "son", "grandfather", "grandpa", "uncle", "nephew",
    "fiancé", "fiance", "stepfather", "stepson",
})
SINGULAR_RELATIVES = frozenset(RELATIVES.replace("fianc[eé]e?", "fiance|fiancee|fiancé|fiancée").split("|"))
GERUNDS: dict[str, str] = {
    "drinking": "drink", "eating": "eat", "smoking": "smoke", "watching": "watch", "playing": "play",
    "using": "use", "buying": "buy",
}
SENTIMENTS: dict[str, str] = {
    "love": POSITIVE, "like": POSITIVE, "enjoy": POSITIVE, "prefer": POSITIVE, "adore": POSITIVE,
    "hate": NEGATIVE, "dislike": NEGATIVE, "detest": NEGATIVE, "loathe": NEGATIVE,
}
# fmt: on
# fmt: off
ASPECTS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (aspect, re.compile(rf"^{ADV}(?:{regex})$", re.IGNORECASE), key)
    for aspect, regex, key in (
        ("residence", r"(?:lives|has lived|has been living|is living|is based|moved|relocated) (?:in|to)"
                      r" (?P<v>.+)", "place"),
        ("employer", r"(?:works|has worked|is working) (?:at|for) (?P<v>.+)", "org"),
        ("job_title", r"(?:is|works as|is working as) (?P<v>(?:a|an) .+)", "occupation"),
        ("diet", rf"is (?:a )?(?P<v>{DIETS})", "diet"),
        ("age", rf"(?:is|turned) (?P<v>\d{{1,3}}|{NUMBER_WORDS})(?: years old)?(?: .*)?", "age"),
    )
)
# fmt: on
"""What a fact about a named relative is about: ``relation:<relation>:<Name>:<aspect>``."""

_FUTURE_HINT = re.compile(
    r"\b(?:will|'ll|going to|gonna|next|soon|upcoming|starting|planning)\b", re.IGNORECASE
)
"""A date in a clause with these is when something will happen, not when a fact became true."""
_ARTICLE = re.compile(r"^(?:(?:a|an|the|their|User's)\s+)+", re.IGNORECASE)
_PLACE_END = re.compile(
    rf"(?:,| (?:with|near|for|since|because|until|from|now|on)\b| {PAST}$"
    rf"| in (?:{MONTHS}|{YEAR}|{SEASONS})\b).*$",
    re.IGNORECASE,
)
_ORG_END = re.compile(rf"(?:,| (?:in|as|since|for|with|because|until|on|now)\b| {PAST}$).*$", re.IGNORECASE)
_OCCUPATION_END = re.compile(r"(?:,| (?:at|in|for|with|since|from|who|and|but|on)\b).*$", re.IGNORECASE)
_ASIDE = re.compile(r"(?:,| at all\b| especially\b).*$", re.IGNORECASE)
_PREFERRED_OVER = re.compile(r" (?:to|over|rather than|than|more than) .*$", re.IGNORECASE)


_HOME_IN = re.compile(r"^(?:a|an|the|their|User's) [\w -]+? in (?=\S)", re.IGNORECASE)


def place(phrase: str) -> str | None:
    """The place of "Utrecht, near the station", "Faro in March", "a small flat in Kreuzberg"."""
    return tidy(_PLACE_END.sub("", _HOME_IN.sub("", phrase))) or None


def organisation(phrase: str) -> str | None:
    """The organisation of "Deloitte in Lisbon" or "Ubisoft as a level designer"."""
    return tidy(_ORG_END.sub("", phrase)) or None


def occupation(phrase: str) -> str | None:
    """ "a senior nurse at Santa Maria" -> ``senior nurse``; None when its head is no occupation."""
    words = tidy(_OCCUPATION_END.sub("", _ARTICLE.sub("", phrase))).split()
    if 0 < len(words) <= 4 and words[-1].lower() in OCCUPATIONS:
        return " ".join(words)
    return None


def thing(phrase: str, verb: str = "") -> str | None:
    """A preference's object as slots write it: lower-cased, no leading article (``beatles``)."""
    if verb == "prefer" and not phrase.lower().startswith("to "):
        phrase = _PREFERRED_OVER.sub("", phrase)
    return _ARTICLE.sub("", tidy(_ASIDE.sub("", phrase))).casefold() or None


def as_written(phrase: str) -> str | None:
    """A value as written, without a trailing aside: "bacalhau com natas, ironically" -> the dish."""
    return tidy(_ASIDE.sub("", phrase)) or None


def relation_key(relation: str, adj: str = "") -> str:
    """A relation as slots write it: ``mom`` -> ``mother``, ``ex-`` kept (``ex-wife``)."""
    prefix = next((p for p in ("ex-", "step-", "half-") if adj.endswith(p)), "")
    return prefix + RELATION_KEYS.get(relation, relation)


def slot_keys(values: dict[str, str]) -> dict[str, str]:
    """The keys slot templates use, derived from a match's groups (a key that cannot be derived is absent)."""
    derived = {
        "thing": thing(values.get("obj", ""), values.get("verb", "")),
        "sentiment": SENTIMENTS.get(values.get("verb", "")),
        "place": place(values.get("obj", "")),
        "origin_place": place(values.get("origin", "")),
        "org": organisation(values.get("obj", "")),
        "occupation": occupation(values.get("obj", "")),
        "diet": values["trait"].lower()
        if re.fullmatch(DIETS, values.get("trait", ""), re.IGNORECASE)
        else None,
        "month_day": month_day(stated_date(values.get("when", ""))),
        "what_key": values.get("what", "").lower().replace("favorite", "favourite") or None,
        "favourite": as_written(values.get("obj", "")),
    }
    relation, name = values.get("relation", ""), values.get("name", "")
    if relation in SINGULAR_RELATIVES and name:
        key = relation_key(relation, values.get("adj", ""))
        derived["whose"] = f"{key}:{name}"
        derived["who"] = key if key in PARTNERS else f"{key}:{name}"
    for aspect, pattern, kind in ASPECTS:
        if (found := pattern.match(values.get("predicate", ""))) is not None:
            says = {"place": place, "org": organisation, "occupation": occupation}.get(kind, tidy)(found["v"])
            says = says.lower() if says is not None and kind == "diet" else says
            derived |= {"aspect": aspect, "aspect_value": says}
            break
    return {key: value for key, value in derived.items() if value}


def slot_and_value(
    slot: str | None, value: str | None, keys: dict[str, str]
) -> tuple[str | None, str | None]:
    """Both templates filled, or ``(None, None)`` when either names a key ``keys`` lacks."""
    filled_slot, filled_value = fill(slot, keys), fill(value, keys)
    if filled_slot is None or (value is not None and filled_value is None):
        return None, None
    return filled_slot, filled_value


def fill(template: str | None, keys: dict[str, str]) -> str | None:
    """``template`` filled from ``keys``; None when it is None or names a key that is missing or empty."""
    if template is None:
        return None
    fields = [field for _, field, _, _ in Formatter().parse(template) if field is not None]
    if any(not keys.get(field) for field in fields):
        return None
    return template.format_map(keys)


# --- Named people --------------------------------------------------------------------------------

_PRONOUN = re.compile(r"^(?P<pronoun>he|she)(?P<be>'s)? (?P<rest>.+)$", re.IGNORECASE)


def _about(values: dict[str, str]) -> tuple[str, str] | None:
    relation, name = values.get("relation", ""), values.get("name", "")
    return (values.get("adj", "") + relation, name) if relation in SINGULAR_RELATIVES and name else None


def _gender(relation: str) -> str | None:
    word = relation.split()[-1].split("-")[-1]
    return "she" if word in FEMALE else "he" if word in MALE else None


def about_someone(clause: str, people: list[tuple[str, str]]) -> str | None:
    """``clause`` about a named relative, with the relative written out; None when it is not one.

    ``people`` are the relatives named so far in the episode, as ``(relation, name)``:
    "He lives in Porto" after "My brother Tom ..." is "my brother Tom lives in Porto". A
    pronoun is resolved only when exactly one of them fits it (by the relation's gender), a
    name only when exactly one of them has it.
    """
    pronoun = _PRONOUN.match(clause)
    if pronoun is not None:
        said = pronoun["pronoun"].lower()
        fits = [p for p in people if _gender(p[0]) in (said, None)]
    else:
        fits = [p for p in people if clause.startswith(p[1] + " ")]
    if len({name for _, name in fits}) != 1:
        return None
    relation, name = fits[0]
    if pronoun is None:
        return f"my {relation} {clause}"
    return f"my {relation} {name} " + ("is " if pronoun["be"] else "") + pronoun["rest"]
