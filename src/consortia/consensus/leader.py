"""Leader election: weighted rotation that avoids validators who recently failed to lead.

The leader of round r is a function of committed data only, so every honest replica that has
committed the same blocks computes the same leader:

1. The window is the last `window` committed blocks whose round is at most r - LAG_ROUNDS
   (replicas have committed those by the time they reach round r, in the common case).
2. Each committed block records who authored it, who signed the QC it carries, and which
   leaders failed: the leaders of the rounds skipped between its parent and itself.
3. A validator is *reliable* when it authored or signed in the window and its latest failure
   as leader (if any) came before its latest authored block. A failure is remembered until
   the validator authors a committed block again, or for FAILURE_MEMORY_BLOCKS committed
   blocks, longer than the window: a validator that signs but never leads well must not be
   forgiven each time a window's length passes. Every validator
   keeps a weight: its voting power times RELIABLE_WEIGHT when reliable, times 1 otherwise,
   so none is ever left out for good, and one failure never costs a validator everything.
4. While the window holds too little data (the validators it shows active hold less than a
   quorum of power: an empty window, or the epoch's first block, whose certificate is the
   unsigned root QC), data too old (no block committed in the last `stall_rounds` = 4 + 2f
   rounds: the chain is stalled, and a window frozen at a bad moment must not keep an
   attacker in the lead), or data from a troubled period (the validators it finds reliable
   hold less than a quorum of power), leaders rotate by voting power alone.
5. The leader is picked in proportion to weight by a low-discrepancy walk over rounds (see
   `_weighted_pick`): deterministic, fair, and a faulty validator never leads many
   consecutive rounds.

A crashed or silent validator therefore leads about one round in RELIABLE_WEIGHT (times its
share of power) once one of its failed rounds is committed and LAG_ROUNDS have passed. A
replica whose committed chain lags may compute a different leader; that costs liveness for a
round (a timeout), never safety.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import (
    Block,
    BlockHeader,
    ReputationMark,
    ReputationRound,
    ReputationState,
)

LAG_ROUNDS = 3
# 2**64 / golden ratio, odd: successive multiples spread evenly over [0, 2**64).
_GOLDEN_64 = 0x9E3779B97F4A7C15
_EPOCH_OFFSET = 7919
FAILED_LEADERS_PER_BLOCK_MAX = 64
# How much more often a reliable validator leads than an unreliable one of the same power.
RELIABLE_WEIGHT = 100
# With 2 rounds per tolerated fault, the rounds without a commit after which reputation
# pauses (f faulty leaders in a row cost about 2f rounds; beyond that the data is stale).
STALL_ROUNDS_BASE = 4
# Committed blocks after which a failure as leader is forgotten.
FAILURE_MEMORY_BLOCKS = 1024
# Failures and authored blocks remembered per validator (the latest few are all it needs).
_PER_VALIDATOR_KEPT = 8


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
        # Committed blocks recorded, and each validator's latest failures as leader and
        # authored blocks as (number of the committed block that recorded it, that block's
        # round, the round failed or authored).
        self._recorded = 0
        self._failed: dict[bytes, deque[tuple[int, int, int]]] = {}
        self._authored: dict[bytes, deque[tuple[int, int, int]]] = {}
        # Rounds without a commit after which the window counts as stale.
        self.stall_rounds = STALL_ROUNDS_BASE + 2 * validators.config.fault_power
        self._powers = [
            (validator.node_id, validator.voting_power)
            for validator in sorted(validators.validators, key=lambda v: v.node_id)
        ]

    def leader(self, round_: int) -> bytes:
        weights = self.weights(round_) if self._reputation else self._powers
        return self._weighted_pick(weights, round_)

    def record_commit(
        self, round_: int, author: bytes, parent_round: int, qc_signers: frozenset[bytes]
    ) -> None:
        """Add a committed block (in commit order) to the history."""
        first_skipped = max(parent_round + 1, round_ - FAILED_LEADERS_PER_BLOCK_MAX)
        failed = tuple((r, self.leader(r)) for r in range(first_skipped, round_))
        self._history.append(CommittedRound(round_, author, qc_signers, failed))
        self._recorded += 1
        for failed_round, leader in failed:
            self._remember(self._failed, leader, round_, failed_round)
        self._remember(self._authored, author, round_, round_)

    def _remember(
        self,
        book: dict[bytes, deque[tuple[int, int, int]]],
        node_id: bytes,
        block_round: int,
        round_: int,
    ) -> None:
        entries = book.get(node_id)
        if entries is None:
            entries = book[node_id] = deque(maxlen=_PER_VALIDATOR_KEPT)
        entries.append((self._recorded, block_round, round_))

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

    def state(self) -> ReputationState:
        """Everything `leader` depends on, as a value a node stores with each commit."""
        return ReputationState(
            epoch=self._validators.epoch,
            recorded=self._recorded,
            history=[
                ReputationRound(
                    entry.round,
                    entry.author,
                    sorted(entry.signers),
                    [(round_, leader) for round_, leader in entry.failed_leaders],
                )
                for entry in self._history
            ],
            failed=_marks(self._failed),
            authored=_marks(self._authored),
        )

    def restore(self, state: ReputationState) -> None:
        """Take over a stored `state` of this epoch, as if its blocks had been recorded."""
        assert state.epoch == self._validators.epoch, "reputation of another epoch"
        assert self._recorded == 0, "restore into a fresh election only"
        self._recorded = state.recorded
        self._history.extend(
            CommittedRound(
                entry.round,
                entry.author,
                frozenset(entry.signers),
                tuple((round_, leader) for round_, leader in entry.failed),
            )
            for entry in state.history
        )
        for book, marks in ((self._failed, state.failed), (self._authored, state.authored)):
            for mark in marks:
                entries = book.get(mark.node_id)
                if entries is None:
                    entries = book[mark.node_id] = deque(maxlen=_PER_VALIDATOR_KEPT)
                entries.append((mark.recorded, mark.block_round, mark.round))

    def weights(self, round_: int) -> list[tuple[bytes, int]]:
        """Every validator with its weight for `round_`, in node-id order (all positive)."""
        limit = round_ - LAG_ROUNDS
        window = [entry for entry in self._history if entry.round <= limit][-self._window :]
        active: set[bytes] = set()
        for entry in window:
            active.add(entry.author)
            active.update(entry.signers)
        active_power = sum(power for node_id, power in self._powers if node_id in active)
        if active_power < self._validators.quorum_power:
            return self._powers  # too little data: plain rotation by voting power
        if round_ - window[-1].round > self.stall_rounds:
            return self._powers  # stalled: the window says nothing about who works now
        forgotten = self._recorded - FAILURE_MEMORY_BLOCKS
        reliable = {
            node_id
            for node_id, _ in self._powers
            if node_id in active
            and _latest(self._failed.get(node_id), limit, forgotten)
            <= _latest(self._authored.get(node_id), limit, 0)
        }
        reliable_power = sum(power for node_id, power in self._powers if node_id in reliable)
        if reliable_power < self._validators.quorum_power:
            # In a synchronous period every honest validator leads well, and the honest hold a
            # quorum: a history that trusts less than a quorum comes from a troubled period
            # (partitions, a restart) and must not hand the few it trusts, perhaps the
            # faulty, most of the rounds.
            return self._powers
        return [
            (node_id, power * RELIABLE_WEIGHT if node_id in reliable else power)
            for node_id, power in self._powers
        ]

    def _weighted_pick(self, weights: list[tuple[bytes, int]], round_: int) -> bytes:
        """A low-discrepancy walk over the validators' weights.

        The point for round r is frac(r * phi) of the total weight (integer Fibonacci hashing,
        a Weyl sequence), offset by the epoch. Consecutive rounds land far apart, so each
        validator leads in proportion to its weight and a faulty one never leads many rounds
        in a row, which a hash of the round alone could not promise.
        """
        total = sum(weight for _, weight in weights)
        step = (round_ + self._validators.epoch * _EPOCH_OFFSET) * _GOLDEN_64 % 2**64
        point = step * total >> 64
        for node_id, weight in weights:
            if point < weight:
                return node_id
            point -= weight
        raise AssertionError("weighted pick fell off the end")


def _marks(book: dict[bytes, deque[tuple[int, int, int]]]) -> list[ReputationMark]:
    return [
        ReputationMark(node_id, recorded, block_round, round_)
        for node_id in sorted(book)
        for recorded, block_round, round_ in book[node_id]
    ]


def _latest(entries: deque[tuple[int, int, int]] | None, limit: int, after: int) -> int:
    """The latest round recorded by a block of round at most `limit` (old enough for every
    replica to have committed it), after the `after`-th committed block."""
    return max(
        (
            round_
            for recorded, block_round, round_ in entries or ()
            if block_round <= limit and recorded > after
        ),
        default=-1,
    )
