"""Votes and timeouts of recent rounds, collected into quorum and timeout certificates.

Owns the per-round buffers of verified votes and timeouts, and the rules for admitting one
into them (membership, round window, duplicates and equivocation, signature). It builds a QC
when a quorum signed the same `VoteData`, and a TC when a quorum timed out in one round; what
a certificate then does to rounds and commits is the replica's business (`replica.py`), not
this module's. This replica's own vote is made here too (`sign_vote`, through the safety
rules), beside the checks its peers' votes must pass; where it goes is the replica's choice.
Pure: no clock, no I/O; drops are counted by reason, nothing raises.
"""

from __future__ import annotations

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.events import Counters
from consortia.consensus.safety import Refusal, SafetyRules
from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import (
    BlockHeader,
    QuorumCertificate,
    SafetyState,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutSignature,
    Vote,
)


class VoteCollector:
    def __init__(self, validators: ValidatorSet, chain_id: str, counters: Counters) -> None:
        self.validators = validators
        self._chain_id = chain_id
        self._counters = counters
        # round -> validator index -> (block id, height, signature). Invariant: only rounds
        # from the replica's round - 1 up to round + rounds_ahead_max (`prune` drops the rest),
        # only verified signatures of members, at most one entry per validator and round.
        self.votes: dict[int, dict[int, tuple[bytes, int, bytes]]] = {}
        # round -> validator index -> (high QC round, signature). Same invariants as `votes`.
        self.timeouts: dict[int, dict[int, tuple[int, bytes]]] = {}
        # round -> the highest QC among that round's timeouts (what its TC will carry).
        # Invariant: its round is the highest high-QC round in `timeouts[round]`.
        self.timeout_qcs: dict[int, QuorumCertificate] = {}

    def new_epoch(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self.votes.clear()
        self.timeouts.clear()
        self.timeout_qcs.clear()

    def prune(self, below_round: int) -> None:
        """Forget rounds below `below_round`: no certificate of theirs can matter any more."""
        for buffer in (self.votes, self.timeouts, self.timeout_qcs):
            for stale in [r for r in buffer if r < below_round]:
                del buffer[stale]

    def member_index(self, author: bytes, chain_id: str) -> int | None:
        """The author's index in the validator set, or None (counted) for a stranger."""
        index = self.validators.index_of.get(author)
        if chain_id != self._chain_id or index is None:
            self._counters.drop("non_member" if index is None else "wrong_chain")
            return None
        return index

    def timeout_author(self, timeout: Timeout, epoch_root_id: bytes) -> int | None:
        """The index of a timeout's author when it is a member, the timeout carries the high
        QC it signed and its certificates verify; None (counted) otherwise. Its signature is
        checked later (`add_timeout`), once its certificates have been adopted."""
        data = timeout.data
        index = self.member_index(timeout.author, data.chain_id)
        if index is None:
            return None
        if data.high_qc_round != timeout.high_qc.round:
            self._counters.drop("malformed_timeout")
            return None
        if not self._timeout_certificates_valid(timeout, epoch_root_id):
            return None
        return index

    def sign_vote(
        self,
        safety: SafetyRules,
        node_id: bytes,
        header: BlockHeader,
        new_id: bytes,
        tc: TimeoutCertificate | None,
    ) -> tuple[Vote, SafetyState] | None:
        """This replica's vote for the block `new_id` and the safety state to persist before
        it leaves, or None (counted by rule) when the safety rules refuse."""
        made = safety.make_vote(header, new_id, tc)
        if isinstance(made, Refusal):
            self._counters.drop("unsafe_to_vote")
            self._counters.refuse(made.rule)
            return None
        data, signature, state = made
        return Vote(data=data, author=node_id, signature=signature), state

    def _timeout_certificates_valid(self, timeout: Timeout, epoch_root_id: bytes) -> bool:
        """The certificates a timeout carries verify (its commit QC only when of this epoch)."""
        validators = self.validators
        last_tc = timeout.last_timeout_certificate
        commit_qc = timeout.high_commit_qc
        valid = (
            validators.verify_qc(timeout.high_qc, epoch_root_id=epoch_root_id)
            and (last_tc is None or validators.verify_tc(last_tc, epoch_root_id=epoch_root_id))
            and (
                commit_qc is None
                or commit_qc.epoch != validators.epoch
                or validators.verify_qc(commit_qc, epoch_root_id=epoch_root_id)
            )
        )
        if not valid:
            self._counters.drop("bad_certificate")
        return valid

    def add_vote(
        self, vote: Vote, round_: int, tree: BlockTree, rounds_ahead_max: int
    ) -> QuorumCertificate | None:
        """Admit a vote; return the QC it completes when that QC is above the tree's high QC.

        Votes are not checked against this replica's view of the next leader: that view may lag
        by a commit, and a quorum of valid votes is a valid QC whoever aggregates it.
        """
        data = vote.data
        index = self.member_index(vote.author, data.chain_id)
        if index is None:
            return None
        if not round_ - 1 <= data.round <= round_ + rounds_ahead_max:
            self._counters.drop("vote_round_out_of_range")
            return None
        round_votes = self.votes.setdefault(data.round, {})
        if index in round_votes:
            same = round_votes[index][0] == data.block_id
            self._counters.drop("duplicate_vote" if same else "equivocating_vote")
            return None
        if data.round < round_ and tree.high_qc.round >= data.round:
            self._counters.drop("vote_after_qc")
            return None
        if not self.validators.verify_one(index, data, vote.signature):
            self._counters.drop("bad_signature")
            return None
        block = tree.get(data.block_id)
        if block is not None and block.header.height != data.height:
            self._counters.drop("malformed_vote")
            return None
        # Votes count together only when they signed the same VoteData: the QC carries one
        # height, and every signature in it must verify against exactly that.
        round_votes[index] = (data.block_id, data.height, vote.signature)
        supporters = [
            i
            for i, (block_id_, height, _) in round_votes.items()
            if block_id_ == data.block_id and height == data.height
        ]
        if not self.validators.has_quorum(supporters) or tree.high_qc.round >= data.round:
            return None
        return QuorumCertificate(
            epoch=data.epoch,
            round=data.round,
            block_id=data.block_id,
            height=data.height,
            signatures=[SignerSignature(i, round_votes[i][2]) for i in sorted(supporters)],
        )

    def add_timeout(
        self, timeout: Timeout, index: int, round_: int, rounds_ahead_max: int
    ) -> tuple[int, TimeoutCertificate | None] | None:
        """Admit a timeout of a member (its certificates already adopted by the replica).

        Returns the power that has timed out in its round and the TC when that power is a
        quorum; None (counted) when the timeout is refused.
        """
        data = timeout.data
        if data.round < round_:
            self._counters.drop("stale_timeout")
            return None
        if data.round > round_ + rounds_ahead_max:
            self._counters.drop("timeout_round_out_of_range")
            return None
        if index in self.timeouts.get(data.round, {}):
            self._counters.drop("duplicate_timeout")
            return None
        if not self.validators.verify_one(index, data, timeout.signature):
            self._counters.drop("bad_signature")
            return None
        round_timeouts = self.timeouts.setdefault(data.round, {})
        round_timeouts[index] = (data.high_qc_round, timeout.signature)
        best = self.timeout_qcs.get(data.round)
        if best is None or timeout.high_qc.round > best.round:
            self.timeout_qcs[data.round] = timeout.high_qc
        power = self.validators.power_of(list(round_timeouts))
        if power < self.validators.quorum_power:
            return power, None
        tc = TimeoutCertificate(
            epoch=data.epoch,
            round=data.round,
            signatures=[
                TimeoutSignature(i, hqc_round, signature)
                for i, (hqc_round, signature) in sorted(round_timeouts.items())
            ],
            high_qc=self.timeout_qcs[data.round],
        )
        return power, tc

    def check(self, current_round: int, rounds_ahead_max: int) -> str | None:
        """The first broken invariant, or None: every buffered round within the window, every
        entry a member's, and each round's timeout QC the highest its timeouts name."""
        low, high = current_round - 1, current_round + rounds_ahead_max
        members = len(self.validators.validators)
        for name, buffer in (("vote", self.votes), ("timeout", self.timeouts)):
            for round_, entries in buffer.items():
                if not low <= round_ <= high:
                    return f"{name}s of round {round_} kept outside rounds {low}..{high}"
                if not all(0 <= index < members for index in entries):
                    return f"a {name} of round {round_} from a validator index out of range"
        if self.timeout_qcs.keys() != self.timeouts.keys():
            return "timeout QCs kept for other rounds than the timeouts"
        for round_, qc in self.timeout_qcs.items():
            if qc.round != max(
                high_qc_round for high_qc_round, _ in self.timeouts[round_].values()
            ):
                return f"the timeout QC of round {round_} is not its timeouts' highest"
        return None
