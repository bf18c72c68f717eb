"""Invariants checked continuously while a simulation runs.

* Agreement: no two replicas commit different blocks at one height: honest ones, nor a
  Byzantine validator's own replica, which commits only on verified certificates.
* Certified extension (the lemma the safety argument rests on): once a block is final by a
  QC of round c, no valid QC of a round above c certifies another block at its height. Every
  QC that travels, whoever sent it, is checked.
* Prefix: each honest replica's committed chain is contiguous and hash-linked, so committed
  chains are prefixes of one another (with agreement at every height).
* Vote uniqueness: no honest replica ever signs two different votes in one (epoch, round),
  across crashes and restarts.
* Proposal uniqueness: no honest leader sends two different proposals in one (epoch, round),
  across crashes and restarts.
* Execution agreement (when slots run engines): the same state root at every height.
Liveness is judged at the end of a run by the harness: every honest replica reaches the
target height, and after stabilisation the cluster never goes more than a bounded number of
rounds without a new commit (`RoundProgress`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consortia.consensus.validators import ValidatorSet
from consortia.crypto import Suite
from consortia.types.consensus import Block, QuorumCertificate, VoteData

VIOLATIONS_MAX = 20


class Checker:
    def __init__(
        self, suite: Suite, honest: set[int], validators: dict[int, ValidatorSet] | None = None
    ) -> None:
        self._suite = suite
        self._honest = honest
        self._validators = validators or {}  # epoch -> its validator set, to verify QCs
        # height -> (block id, epoch, the round of the QC that made it final)
        self._final: dict[int, tuple[bytes, int, int]] = {}
        self._checked: set[bytes] = set()  # QCs already checked (block id + round)
        self._by_height: dict[int, tuple[bytes, int]] = {}
        self._tips: dict[int, tuple[int, bytes]] = {}
        self._votes: dict[tuple[bytes, int, int], bytes] = {}
        self._proposals: dict[tuple[bytes, int, int], bytes] = {}
        self._roots: dict[int, tuple[bytes, int]] = {}
        self.violations: list[str] = []

    def violation(self, text: str) -> None:
        if len(self.violations) < VIOLATIONS_MAX:
            self.violations.append(text)

    def finalised(self, height: int, block_id: bytes, proof: QuorumCertificate) -> None:
        """A block was committed on the strength of `proof` (the two-chain's second QC)."""
        known = self._final.get(height)
        if known is None or (proof.epoch, proof.round) < known[1:]:
            self._final[height] = (block_id, proof.epoch, proof.round)

    def certificate(self, qc: QuorumCertificate) -> None:
        """A QC travelled: if valid, it must not certify a block conflicting with a final one
        at a round after that block became final."""
        final = self._final.get(qc.height)
        if final is None or final[0] == qc.block_id or qc.round == 0:
            return
        if qc.epoch != final[1] or qc.round <= final[2]:
            return  # rounds compare within one epoch only
        key = qc.block_id + qc.round.to_bytes(8, "big")
        if key in self._checked:
            return
        self._checked.add(key)
        validators = self._validators.get(qc.epoch)
        if validators is None or not validators.verify_qc(qc):
            return
        self.violation(
            f"certified conflict: a QC of round {qc.round} certifies {qc.block_id.hex()[:12]} at "
            f"height {qc.height}, where {final[0].hex()[:12]} was final at round {final[2]}"
        )

    def committed(self, slot: int, height: int, block_id: bytes, block: Block) -> None:
        """A replica committed `block`. A Byzantine validator's own replica commits only on
        certificates it verified, which carry honest signatures: its commits must agree
        with the honest ones too (a commit proof for a conflicting block is a fork, whoever
        holds it)."""
        if slot not in self._honest:
            self._agree(slot, height, block_id)
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
        self._agree(slot, height, block_id)

    def _agree(self, slot: int, height: int, block_id: bytes) -> None:
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

    def proposed(self, slot: int, node_id: bytes, epoch: int, round_: int, block_id: bytes) -> None:
        if slot not in self._honest:
            return
        key = (node_id, epoch, round_)
        previous = self._proposals.setdefault(key, block_id)
        if previous != block_id:
            self.violation(
                f"slot {slot} proposed two different blocks in epoch {epoch} round {round_}"
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


@dataclass(slots=True)
class RoundProgress:
    """The cluster's highest round over time, and the round at which each height was first
    committed: how many rounds pass without a commit."""

    rounds: list[tuple[int, int, int]] = field(default_factory=list)  # (ms, epoch, round)
    commits: list[tuple[int, int, int]] = field(default_factory=list)  # (ms, epoch, round)

    def entered(self, now_ms: int, epoch: int, round_: int) -> None:
        self.rounds.append((now_ms, epoch, round_))

    def committed(self, now_ms: int, epoch: int, round_: int) -> None:
        self.commits.append((now_ms, epoch, round_))

    def rounds_without_commit_max(self, stable_ms: int, *, finished: bool) -> int:
        """The longest stretch of rounds, from `stable_ms` on, with no new height committed
        (to the end of the run too, unless it finished)."""
        before = [entry for entry in self.rounds if entry[0] <= stable_ms]
        mark = before[-1][1:] if before else (0, 0)
        worst = 0
        for _, epoch, round_ in (c for c in self.commits if c[0] >= stable_ms):
            if epoch == mark[0]:
                worst = max(worst, round_ - mark[1])
            mark = (epoch, round_)
        if not finished and self.rounds and self.rounds[-1][1] == mark[0]:
            worst = max(worst, self.rounds[-1][2] - mark[1])
        return worst
