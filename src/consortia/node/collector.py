"""The node process's garbage-collection policy.

A node holds a large, long-lived heap: the engine's current values, the state tree's cached
nodes, blocks, mempool entries. Python's cyclic collector scans every tracked object of the
oldest generation on each full collection; with a state of 50,000 accounts a full collection
took up to 1.1 s and collections together most of the CPU time (`benchmarks/tx_cost.py
--accounts 50000`: 650 µs a transfer per validator, 466 µs under this policy). Almost nothing
in that heap is cyclic: it is freed by reference counting, never by the collector.

So: after the state is loaded, and after every recorded commit, everything alive is frozen
(`gc.freeze`: moved out of the collector's generations, in constant time), so each collection
scans only what was allocated since; young collections run less often (`GEN0_THRESHOLD`).
Frozen cyclic garbage would never be freed, so every `FULL_COLLECTION_COMMITS` commits the
heap is unfrozen and collected in full once (a pause, counted and timed here).

Executing and recording committed blocks runs with the collector paused (`paused`), and what
it left alive is frozen at once. That work allocates tens of thousands of objects a block that
live on (the state tree's new nodes and their keys, the tree's batch, receipts), and young
collections in its midst only scanned them, to free nothing: at 300,000 accounts they were 8%
of a validator's time (`benchmarks/tx_cost.py`). Nothing in it makes cycles, and the pause ends
with the block, so it cannot hold garbage for longer than a commit.

Owns the process's collector settings only; must never run in the pure cores or the
simulator (they keep Python's defaults), nor decide anything about the chain.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

GEN0_THRESHOLD: Final = 20_000
GEN1_THRESHOLD: Final = 50
GEN2_THRESHOLD: Final = 100
# Commits (batches the driver records) between two full collections of an unfrozen heap.
FULL_COLLECTION_COMMITS: Final = 2_000


class CollectorPolicy:
    """Freezes the heap after the state is loaded and after each commit; collects it in
    full every FULL_COLLECTION_COMMITS commits."""

    def __init__(self, full_every: int = FULL_COLLECTION_COMMITS) -> None:
        assert full_every >= 1
        self.full_every = full_every
        self.commits = 0
        self.full_collections = 0
        self.full_collection_ms_max = 0.0

    def start(self) -> None:
        gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
        gc.collect()
        gc.freeze()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No collection while the body runs (the driver's execution and recording of a
        commit); then everything alive is frozen, so none of it is scanned by the young
        collections that follow, and the collector runs again."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            if was_enabled:
                gc.enable()

    def committed(self, _blocks: Any = None) -> None:
        self.commits += 1
        if self.commits % self.full_every == 0:
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.full_collection_ms_max = max(self.full_collection_ms_max, elapsed_ms)
        gc.freeze()
