"""The partition function and the rebalancing arithmetic (no services)."""

from __future__ import annotations

import zlib

import pytest

from projections.partitioning import (
    SLOTS,
    check_partitions,
    fair_share,
    partition_of,
    rebalance,
    slot_of,
    slots_of,
)
from projections.subjects import partition_filters, type_filters


def test_a_users_slot_is_crc32_of_the_id_and_stable() -> None:
    assert slot_of("u-1") == zlib.crc32(b"u-1") >> 26 == slot_of("u-1")
    assert slot_of(None) == 0
    assert slot_of("é") == zlib.crc32("é".encode()) >> 26
    assert {slot_of(f"u-{i}") for i in range(2000)} == set(range(SLOTS))  # every slot gets users


def test_ids_that_differ_in_a_last_digit_spread_over_the_partitions() -> None:
    assert {partition_of(f"user-{i}", 2) for i in range(4)} == {0, 1}
    assert {partition_of(f"user-{i}", 4) for i in range(4)} == {0, 1, 2, 3}
    for partitions in (2, 4):
        counts = [0] * partitions
        for i in range(1000):
            counts[partition_of(f"user-{i}", partitions)] += 1
        assert min(counts) > 0.9 * 1000 / partitions


def test_a_partition_holds_the_slots_congruent_to_it_and_each_slot_once() -> None:
    for partitions in (1, 2, 3, 4, 7, 64):
        held = [s for p in range(partitions) for s in slots_of(p, partitions)]
        assert sorted(held) == list(range(SLOTS))
        assert all(partition_of(f"u{i}", partitions) in range(partitions) for i in range(50))
        assert all(partition_of(f"u{i}", partitions) == slot_of(f"u{i}") % partitions for i in range(50))
    with pytest.raises(ValueError):
        check_partitions(0)
    with pytest.raises(ValueError):
        check_partitions(65)
    with pytest.raises(ValueError):
        slots_of(4, 4)


def test_filters_match_old_and_new_subjects_or_one_partitions_slots() -> None:
    assert type_filters("MemoryCreated", "e") == ["e.*.MemoryCreated", "e.*.MemoryCreated.*"]
    filters = partition_filters(["A", "B"], 1, 32, "e")
    assert filters == ["e.*.A.1", "e.*.A.33", "e.*.B.1", "e.*.B.33"]


def test_fair_share_is_the_ceiling() -> None:
    assert [fair_share(4, n) for n in (0, 1, 2, 3, 4, 5)] == [4, 4, 2, 2, 1, 1]


def settle(partitions: int, runners: list[str], holders: dict[int, str] | None = None) -> dict[int, str]:
    """Ticks of every runner in turn until nobody moves; who holds what."""
    holders = dict(holders or {})
    for _ in range(50):
        moved = False
        for me in runners:
            move = rebalance(me, partitions, holders, runners)
            for p in move.release:
                del holders[p]
            for p in move.claim:
                holders.setdefault(p, me)
            moved = moved or bool(move.release or move.claim)
        if not moved:
            return holders
    raise AssertionError(f"no fixed point: {holders}")


def test_one_runner_takes_all_and_a_second_gets_half() -> None:
    alone = settle(4, ["a"])
    assert alone == dict.fromkeys(range(4), "a")
    both = settle(4, ["a", "b"], alone)
    assert sorted(both.values()).count("a") == 2 and sorted(both.values()).count("b") == 2


@pytest.mark.parametrize(("partitions", "runners"), [(4, 3), (5, 2), (8, 3), (3, 4), (16, 5), (2, 1)])
def test_every_partition_is_held_and_no_runner_holds_more_than_its_share(
    partitions: int, runners: int
) -> None:
    names = [f"r{i}" for i in range(runners)]
    held = settle(partitions, names, settle(partitions, names[:1]))
    assert sorted(held) == list(range(partitions))
    counts = [list(held.values()).count(n) for n in names]
    assert max(counts) <= fair_share(partitions, runners)
    assert min(counts) >= partitions // runners


def test_a_dead_runners_partitions_go_to_the_survivor() -> None:
    split = settle(4, ["a", "b"], settle(4, ["a"]))
    survivor = settle(4, ["a"], {p: h for p, h in split.items() if h == "a"})  # b's leases expired
    assert survivor == dict.fromkeys(range(4), "a")


def test_runners_starting_together_ask_for_different_partitions() -> None:
    runners = ["a", "b", "c", "d"]
    claims = [set(rebalance(r, 4, {}, runners).claim) for r in runners]
    assert set().union(*claims) == set(range(4)) and sum(len(c) for c in claims) == 4
