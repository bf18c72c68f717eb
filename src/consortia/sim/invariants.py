"""Invariants checked continuously while a simulation runs.

* Agreement: no two honest replicas commit different blocks at one height.
* Prefix: each honest replica's committed chain is contiguous and hash-linked, so committed
  chains are prefixes of one another (with agreement at every height).
* Vote uniqueness: no honest replica ever signs two different votes in one (epoch, round),
  across crashes and restarts.
* Execution agreement (when slots run engines): the same state root at every height.
Liveness (honest replicas keep committing after stabilisation) is judged at the end of a run
by the harness, against its bound.
"""

from __future__ import annotations

from consortia.crypto import Suite
from consortia.types.consensus import Block, VoteData

VIOLATIONS_MAX = 20


class Checker:
    def __init__(self, suite: Suite, honest: set[int]) -> None:
        self._suite = suite
        self._honest = honest
        self._by_height: dict[int, tuple[bytes, int]] = {}
        self._tips: dict[int, tuple[int, bytes]] = {}
        self._votes: dict[tuple[bytes, int, int], bytes] = {}
        self._roots: dict[int, tuple[bytes, int]] = {}
        self.violations: list[str] = []

    def violation(self, text: str) -> None:
        if len(self.violations) < VIOLATIONS_MAX:
            self.violations.append(text)

    def committed(self, slot: int, height: int, block_id: bytes, block: Block) -> None:
        if slot not in self._honest:
            return
        tip = self._tips.get(slot)
        if tip is not None:
            tip_height, tip_id = tip
            if height != tip_height + 1 or block.header.parent_id != tip_id:
                self.violation(
                    f"slot {slot} committed height {height} on top of height {tip_height} "
                    "without a parent link"
                )
        elif height != 1:
            self.violation(f"slot {slot} committed height {height} first")
        self._tips[slot] = (height, block_id)
        seen = self._by_height.get(height)
        if seen is None:
            self._by_height[height] = (block_id, slot)
        elif seen[0] != block_id:
            self.violation(
                f"agreement: slots {seen[1]} and {slot} committed different blocks at height "
                f"{height} ({seen[0].hex()[:12]} vs {block_id.hex()[:12]})"
            )

    def signed_vote(self, slot: int, node_id: bytes, vote: VoteData) -> None:
        if slot not in self._honest:
            return
        key = (node_id, vote.epoch, vote.round)
        previous = self._votes.get(key)
        if previous is None:
            self._votes[key] = vote.block_id
        elif previous != vote.block_id:
            self.violation(
                f"slot {slot} signed two different votes in epoch {vote.epoch} round {vote.round}"
            )

    def executed(self, slot: int, height: int, state_root: bytes) -> None:
        """Execution agreement: every honest engine reaches the same root at a height."""
        if slot not in self._honest:
            return
        seen = self._roots.get(height)
        if seen is None:
            self._roots[height] = (state_root, slot)
        elif seen[0] != state_root:
            self.violation(
                f"execution: slots {seen[1]} and {slot} reached different state roots at "
                f"height {height}"
            )
