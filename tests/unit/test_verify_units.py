"""The pure parts of ``memsaga verify`` and ``memsaga chaos``: ranges to republish, violations
from reports, the fault schedule and the saga plan."""

from __future__ import annotations

import random
from collections import Counter

from memsaga.chaos.faults import LONG_OUTAGE, ROUND, schedule
from memsaga.chaos.workload import KINDS, plan_sagas, request_for
from memsaga.verify.report import LagReport, PositionsCheck, StreamCheck
from memsaga.verify.run import Limits, positions_violations, stream_violations
from memsaga.verify.stream import position_ranges


def test_missing_positions_become_inclusive_ranges_with_a_republish_command() -> None:
    assert position_ranges([9, 3, 4, 5, 12]) == [(3, 5), (9, 9), (12, 12)]
    assert position_ranges([]) == []
    ranges = position_ranges([3, 4, 9])
    check = StreamCheck(
        stream="S",
        messages=7,
        store_events=9,
        relayed_up_to=9,
        checked=9,
        missing=3,
        missing_ranges=ranges,
        unknown=0,
        republished=0,
        republish=[f"memsaga relay --from-position {a} --to-position {b}" for a, b in ranges],
    )
    fixes = [v.fix for v in stream_violations(check)]
    assert fixes == [
        "memsaga relay --from-position 3 --to-position 4",
        "memsaga relay --from-position 9 --to-position 9",
    ]


def test_lag_is_a_violation_only_past_the_limit_and_any_parked_event_is_one() -> None:
    checked = PositionsCheck(
        head=100,
        relay=LagReport(name="S", position=90, lag_events=10, lag_seconds=5.0),
        projections=[
            LagReport(name="memories", position=100, lag_events=0, lag_seconds=0.0, parked=2),
            LagReport(name="extractions", position=40, lag_events=60, lag_seconds=61.0),
        ],
    )
    kinds = {(v.kind, v.subject) for v in positions_violations(checked, Limits(max_lag=60.0))}
    assert kinds == {("parked", "memories"), ("projection_lag", "extractions")}
    strict = {v.kind for v in positions_violations(checked, Limits(max_lag=0.0))}
    assert strict == {"relay_lag", "projection_lag", "parked"}


def test_faults_come_in_rounds_with_one_long_outage_per_hundred() -> None:
    eight = schedule(8, random.Random(15))
    assert len(eight) == 8 and eight.count(LONG_OUTAGE) == 1 and eight[0] != LONG_OUTAGE
    assert len(set(eight)) == 8  # no kind twice before each had its turn
    many = Counter(schedule(500, random.Random(1)))
    assert many[LONG_OUTAGE] == 5
    assert {many[k] for k in ROUND} <= {55, 56}  # 495 faults in rounds of 9
    assert schedule(8, random.Random(15)) == eight  # the seed decides


def test_every_saga_kind_is_planned_with_a_user_of_its_own() -> None:
    plans = plan_sagas(20, random.Random(3), "run")
    assert {p.kind for p in plans} == set(KINDS)
    assert len({p.user_id for p in plans}) == 20
    failing = next(p for p in plans if p.kind == "failing")
    assert request_for(failing).options.embedder == "http"
    reviewed = next(p for p in plans if p.kind == "reject")
    assert request_for(reviewed).options.review and "allergic" in reviewed.text
