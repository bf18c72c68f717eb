"""Leader election: weighted rotation that avoids validators who recently failed to lead.

The leader of round r is a function of committed data only, so every honest replica that has
committed the same blocks computes the same leader:

1. The window is the last `window` committed blocks whose round is at most r - LAG_ROUNDS
   (replicas have committed those by the time they reach round r, in the common case).
2. Each committed block records who authored it, who signed the QC it carries, and which
   leaders failed: the leaders of the rounds skipped between its parent and itself.
3. Candidates are the validators that authored or signed in the window, minus those whose
   latest failure as leader in the window came after their latest authored block. If that
   leaves nobody (or the window is empty), every validator is a candidate.
4. The leader is picked from the candidates in proportion to voting power by a
   low-discrepancy walk over rounds (see `_weighted_pick`): deterministic, fair, and a
   faulty candidate never leads many consecutive rounds.

A crashed or silent validator therefore stops being chosen once one of its failed rounds is
committed and LAG_ROUNDS have passed. A replica whose committed chain lags may compute a
different leader; that costs liveness for a round (a timeout), never safety.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import Block, BlockHeader

LAG_ROUNDS = 3
# 2**64 / golden ratio, odd: successive multiples spread evenly over [0, 2**64).
_GOLDEN_64 = 0x9E3779B97F4A7C15
_EPOCH_OFFSET = 7919
FAILED_LEADERS_PER_BLOCK_MAX = 64


@dataclass(frozen=True, slots=True)
class CommittedRound:
    round: int
    author: bytes
    signers: frozenset[bytes]
    failed_leaders: tuple[tuple[int, bytes], ...]  # (round, leader)


class LeaderElection:
    def __init__(self, validators: ValidatorSet, window: int, *, reputation: bool = True) -> None:
        assert window >= 1
        self._validators = validators
        self._window = window
        self._reputation = reputation
        # Enough history for any round: the window plus blocks too recent to count yet.
        self._history: deque[CommittedRound] = deque(maxlen=window + 4 * LAG_ROUNDS + 8)
        self._sorted = sorted(v.node_id for v in validators.validators)

    def leader(self, round_: int) -> bytes:
        candidates = self._candidates(round_) if self._reputation else self._sorted
        return self._weighted_pick(candidates, round_)

    def record_commit(
        self, round_: int, author: bytes, parent_round: int, qc_signers: frozenset[bytes]
    ) -> None:
        """Add a committed block (in commit order) to the history."""
        first_skipped = max(parent_round + 1, round_ - FAILED_LEADERS_PER_BLOCK_MAX)
        failed = tuple((r, self.leader(r)) for r in range(first_skipped, round_))
        self._history.append(CommittedRound(round_, author, qc_signers, failed))

    def record_blocks(self, blocks: list[Block], after: BlockHeader | None = None) -> None:
        """Add committed blocks (oldest first) that follow `after` (the previous committed
        block, if known). Blocks of other epochs are skipped: the history is this epoch's."""
        epoch = self._validators.epoch
        previous_round = after.round if after is not None and after.epoch == epoch else 0
        validators = self._validators.validators
        for block in blocks:
            header = block.header
            if header.epoch != epoch:
                previous_round = 0
                continue
            signers = frozenset(
                validators[entry.index].node_id
                for entry in header.justify.signatures
                if entry.index < len(validators)
            )
            self.record_commit(header.round, header.author, previous_round, signers)
            previous_round = header.round

    def _candidates(self, round_: int) -> list[bytes]:
        limit = round_ - LAG_ROUNDS
        window = [entry for entry in self._history if entry.round <= limit][-self._window :]
        if not window:
            return self._sorted
        active: set[bytes] = set()
        last_authored: dict[bytes, int] = {}
        last_failed: dict[bytes, int] = {}
        for entry in window:
            active.add(entry.author)
            active.update(entry.signers)
            last_authored[entry.author] = entry.round
            for failed_round, leader in entry.failed_leaders:
                if failed_round <= limit:
                    last_failed[leader] = failed_round
        candidates = [
            node_id
            for node_id in self._sorted
            if node_id in active and last_failed.get(node_id, -1) <= last_authored.get(node_id, -1)
        ]
        return candidates or self._sorted

    def _weighted_pick(self, candidates: list[bytes], round_: int) -> bytes:
        """A low-discrepancy walk over the candidates' voting power.

        The point for round r is frac(r * phi) of the total power (integer Fibonacci hashing,
        a Weyl sequence), offset by the epoch. Consecutive rounds land far apart, so each
        candidate leads in proportion to its power and a faulty one never leads many rounds
        in a row, which a hash of the round alone could not promise.
        """
        validators = self._validators
        powers = [validators.validators[validators.index_of[c]].voting_power for c in candidates]
        total = sum(powers)
        step = (round_ + validators.epoch * _EPOCH_OFFSET) * _GOLDEN_64 % 2**64
        point = step * total >> 64
        for candidate, power in zip(candidates, powers, strict=True):
            if point < power:
                return candidate
            point -= power
        raise AssertionError("weighted pick fell off the end")
