"""The node's collector policy: the heap is frozen after start and after each commit, and
cyclic garbage is still freed by the periodic full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from consortia.node.collector import GEN0_THRESHOLD, CollectorPolicy


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_sets_the_thresholds_and_freezes_what_is_alive() -> None:
    policy = CollectorPolicy()
    policy.start()
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0
    assert gc.get_count()[0] < GEN0_THRESHOLD


def test_frozen_cycles_are_freed_by_the_periodic_full_collection() -> None:
    policy = CollectorPolicy(full_every=3)
    policy.start()
    cycle = Node()
    gone = weakref.ref(cycle)
    policy.committed()  # frozen now, with the cycle still referenced
    del cycle
    gc.collect()
    assert gone() is not None, "a frozen cycle is not collected"
    policy.committed()
    assert gone() is not None and policy.full_collections == 0
    policy.committed()  # the third commit: unfreeze, collect in full, freeze again
    assert gone() is None
    assert policy.full_collections == 1 and policy.full_collection_ms_max > 0
    assert gc.get_freeze_count() > 0


def test_no_collection_runs_while_paused_and_what_it_left_is_frozen() -> None:
    policy = CollectorPolicy()
    policy.start()
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with policy.paused():
            assert not gc.isenabled()
            kept = [[n] for n in range(3 * GEN0_THRESHOLD)]  # enough to trigger several
            assert collections == []
        assert gc.isenabled()
        assert gc.get_count()[0] < GEN0_THRESHOLD, "what the body left is frozen"
        assert gc.is_tracked(kept[0]) and len(kept) == 3 * GEN0_THRESHOLD
    finally:
        gc.callbacks.remove(count)


def test_the_collector_runs_again_after_a_failed_body_and_stays_off_if_it_was() -> None:
    policy = CollectorPolicy()
    with pytest.raises(RuntimeError), policy.paused():
        raise RuntimeError("execution failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with policy.paused():
            pass
        assert not gc.isenabled(), "a collector that was off stays off"
    finally:
        gc.enable()
