"""Partitions of a projection by user: the slot of an event, its partition, and fair shares.

An event's *slot* is a stable function of its user id alone: crc32 of the UTF-8 bytes scaled
into :data:`SLOTS` slots, i.e. its top six bits (events without a user go to slot 0). The top
bits, not the remainder: crc32 is linear, and its low bits split ids that differ only in a
last digit (``user-0`` to ``user-3``) all into even slots. The relay publishes the slot as the
subject's last token, so a consumer can filter on it. A projection version with P partitions
gives slot ``s`` to partition ``s % P``: one user's events always land in one partition, and
the slot never changes when P does (only which partition holds it).

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

SLOTS = 64
"""Slots in every subject; a projection's partition count must divide into them (1..64)."""
NO_USER_SLOT = 0
"""The slot of events without a user."""


def slot_of(user_id: str | None) -> int:
    """The slot of a user's events (:data:`NO_USER_SLOT` without a user)."""
    if user_id is None:
        return NO_USER_SLOT
    return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) * SLOTS >> 32


def partition_of(user_id: str | None, partitions: int) -> int:
    """The partition (0..partitions-1) that applies a user's events."""
    return slot_of(user_id) % partitions


def slots_of(partition: int, partitions: int) -> list[int]:
    """The slots partition ``partition`` of ``partitions`` holds."""
    check_partitions(partitions)
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
    return list(range(partition, SLOTS, partitions))


def check_partitions(partitions: int) -> int:
    """``partitions`` if it is a valid count. :raises ValueError: it is not in 1..:data:`SLOTS`."""
    if not 1 <= partitions <= SLOTS:
        raise ValueError(f"a projection has 1 to {SLOTS} partitions, not {partitions}")
    return partitions


# --- Sharing partitions between runners -----------------------------------------------------------


def fair_share(partitions: int, live_runners: int) -> int:
    """How many partitions one runner may hold: ceil(P / live runners), all of them when alone."""
    return math.ceil(partitions / max(live_runners, 1))


@dataclass(frozen=True, slots=True)
class Rebalance:
    """What one runner does at a tick: partitions to give up and partitions to try to take."""

    release: tuple[int, ...] = ()
    claim: tuple[int, ...] = ()


def rebalance(
    me: str,
    partitions: int,
    holders: Mapping[int, str],
    live: Collection[str],
) -> Rebalance:
    """One runner's move, given who holds which partition (live leases only) and who is alive.

    A runner claims free partitions up to its fair share and releases what it holds beyond it
    (highest first). It prefers the free partitions from ``rank * share`` on (its rank among the
    live runners' ids), so that runners starting together ask for different ones.

    So that nobody is left out when shares do not divide evenly (4 partitions, 3 runners:
    2, 2, 0), the runner holding most (ties: the greatest id) also gives one up while another
    live runner holds fewer than floor(P / live); the runner left short takes it at its next tick.
    """
    runners = set(live) | {me}
    share = fair_share(partitions, len(runners))
    counts = dict.fromkeys(runners, 0)
    for holder in holders.values():
        if holder in counts:
            counts[holder] += 1
    mine = sorted(p for p, holder in holders.items() if holder == me)
    if len(mine) > share:
        return Rebalance(release=tuple(mine[share:]))
    start = sorted(runners).index(me) * share
    free = sorted((p for p in range(partitions) if p not in holders), key=lambda p: (p - start) % partitions)
    if free and len(mine) < share:
        return Rebalance(claim=tuple(free[: share - len(mine)]))
    floor = partitions // len(runners)
    short = any(n < floor for r, n in counts.items() if r != me)
    richest = max(counts, key=lambda r: (counts[r], r))
    if short and not free and richest == me and len(mine) > floor:
        return Rebalance(release=(mine[-1],))
    return Rebalance()
