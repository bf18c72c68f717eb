"""The simulated network: latency, loss, duplication, reordering, partitions, stabilisation.

All randomness comes from the `random.Random` the simulation hands in, so one seed is one
network history. Before the global stabilisation time (GST) links may drop, duplicate and
delay messages arbitrarily (within the configured distribution) and partitions come and go;
from GST on, every message between two running replicas arrives within `delta_ms`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Partition:
    """From `start_ms` to `end_ms`, slots only reach slots in their own group."""

    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int) -> bool:
        for group in self.groups:
            if a in group:
                return b not in group
        return True  # a slot in no group is cut off from everyone


@dataclass(slots=True)
class NetworkModel:
    latency_ms_min: int = 5
    latency_ms_max: int = 50
    drop_percent: int = 0
    duplicate_percent: int = 0
    gst_ms: int = 0
    delta_ms: int = 50
    partitions: list[Partition] = field(default_factory=list)

    def partitioned(self, now_ms: int, a: int, b: int) -> bool:
        return any(p.start_ms <= now_ms < p.end_ms and p.separates(a, b) for p in self.partitions)

    def deliveries(self, rng: random.Random, now_ms: int, source: int, target: int) -> list[int]:
        """Delays (ms) of the copies of one message that arrive; empty if it is lost."""
        if source == target:
            return [0]
        if self.partitioned(now_ms, source, target):
            return []
        if now_ms >= self.gst_ms:
            high = min(self.latency_ms_max, self.delta_ms)
            return [rng.randint(min(self.latency_ms_min, high), high)]
        if rng.randrange(100) < self.drop_percent:
            return []
        copies = 2 if rng.randrange(100) < self.duplicate_percent else 1
        return [rng.randint(self.latency_ms_min, self.latency_ms_max) for _ in range(copies)]

    @property
    def mean_latency_ms(self) -> float:
        return (self.latency_ms_min + min(self.latency_ms_max, self.delta_ms)) / 2


def random_partitions(
    rng: random.Random, slots: list[int], until_ms: int, count: int, length_ms_max: int
) -> list[Partition]:
    """`count` partitions at random times before `until_ms`, each into two or three groups."""
    partitions = []
    for _ in range(count):
        start = rng.randrange(0, max(1, until_ms - 1))
        end = min(until_ms, start + rng.randint(length_ms_max // 4, length_ms_max))
        shuffled = slots[:]
        rng.shuffle(shuffled)
        group_count = rng.choice([2, 2, 3])
        cuts = sorted(rng.sample(range(1, len(shuffled)), min(group_count - 1, len(shuffled) - 1)))
        groups = []
        previous = 0
        for cut in [*cuts, len(shuffled)]:
            groups.append(frozenset(shuffled[previous:cut]))
            previous = cut
        partitions.append(Partition(start, end, tuple(groups)))
    return partitions


def twin_split_partitions(
    rng: random.Random,
    twins: list[tuple[int, int]],
    honest: list[int],
    *,
    until_ms: int,
    count: int,
    length_ms_max: int,
) -> list[Partition]:
    """Partitions in the style of Twins: each Byzantine pair is split across two sides.

    Every honest slot lands on a random side, so each side may hold a quorum of node ids
    while the twins show the two sides different proposals and votes.
    """
    partitions = []
    for _ in range(count):
        start = rng.randrange(0, max(1, until_ms - 1))
        end = min(until_ms, start + rng.randint(length_ms_max // 4, length_ms_max))
        sides: tuple[set[int], set[int]] = (set(), set())
        for first, second in twins:
            flip = rng.randrange(2)
            sides[flip].add(first)
            sides[1 - flip].add(second)
        for slot in honest:
            sides[rng.randrange(2)].add(slot)
        partitions.append(Partition(start, end, (frozenset(sides[0]), frozenset(sides[1]))))
    return partitions
