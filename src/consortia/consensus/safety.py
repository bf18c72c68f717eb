"""Safety rules: the only code that decides whether this replica signs a vote or a timeout.

Everything that can make two honest replicas commit different blocks is decided here, in a
few rules taken from Jolteon (DiemBFT v4), written out in docs/consensus.md section "Safety":

* vote for a block of round r only if r > max(highest_vote_round, qc_round) and either the
  block extends the QC of round r-1 (consecutive) or it carries a timeout certificate of
  round r-1 and its QC is at least the highest QC round named in that certificate;
* sign a timeout for round r only if its high QC is at least the highest QC round this
  replica has voted on (the lock), r > max(highest_vote_round - 1, qc_round), and r follows
  the QC's round or the last TC's round;
* a vote or timeout raises `highest_vote_round` to r, so after timing out in r the replica
  never votes in r.

The state these rules keep is returned with every signature and must be made durable by
the caller before the signed message leaves (the replica holds it until `PersistDone`). The
module never reads a clock, the disk or randomness, and never sees the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.crypto import Suite
from consortia.types.consensus import (
    BlockHeader,
    QuorumCertificate,
    SafetyState,
    TimeoutCertificate,
    TimeoutData,
    VoteData,
)
from consortia.types.signing import sign


@dataclass(frozen=True, slots=True)
class Weakening:
    """Test-only switches that break safety on purpose, to show the checker catches it.

    Never set outside tests and `consortia sim --weaken`; a node refuses to start with any.
    """

    # Vote more than once per round: the safety rule, and the replica's refusal of a second
    # proposal in a round, both switched off.
    skip_vote_round_check: bool = False
    skip_lock_check: bool = False
    quorum_is_f_plus_one: bool = False

    @property
    def any(self) -> bool:
        return self.skip_vote_round_check or self.skip_lock_check or self.quorum_is_f_plus_one


NO_WEAKENING = Weakening()


class SafetyRules:
    def __init__(
        self,
        suite: Suite,
        private_key: bytes,
        chain_id: str,
        state: SafetyState,
        weakening: Weakening = NO_WEAKENING,
    ) -> None:
        self._suite = suite
        self._private_key = private_key
        self._chain_id = chain_id
        self.state = state
        self._weakening = weakening

    @property
    def highest_qc_round(self) -> int:
        return self.state.highest_qc.round

    def enter_epoch(self, epoch: int, root_qc: QuorumCertificate) -> SafetyState:
        """A new epoch starts with fresh rounds; the caller persists the returned state."""
        assert epoch > self.state.epoch, "epochs only move forward"
        self.state = SafetyState(epoch=epoch, highest_vote_round=0, highest_qc=root_qc)
        return self.state

    def make_vote(
        self, header: BlockHeader, block_id: bytes, tc: TimeoutCertificate | None
    ) -> tuple[VoteData, bytes, SafetyState] | None:
        """A signed vote for the block and the state to persist first, or None if unsafe.

        The caller has already checked the block's certificate and the TC's signatures.
        """
        if header.epoch != self.state.epoch:
            return None
        previous = self.state.last_vote
        if previous is not None and previous.round == header.round:
            if previous.block_id == block_id and self.state.last_vote_signature is not None:
                # The same vote again (a restart or a retransmission): never a second one.
                return previous, self.state.last_vote_signature, self.state
            if not self._weakening.skip_vote_round_check:
                return None
        if not self._safe_to_vote(header.round, header.justify.round, tc):
            return None
        data = VoteData(self._chain_id, header.epoch, header.round, block_id, header.height)
        signature = sign(self._suite, self._private_key, data)
        highest_qc = self.state.highest_qc
        if header.justify.round > highest_qc.round:
            highest_qc = header.justify
        self.state = SafetyState(
            epoch=self.state.epoch,
            highest_vote_round=max(self.state.highest_vote_round, header.round),
            highest_qc=highest_qc,
            last_vote=data,
            last_vote_signature=signature,
            last_timeout_certificate=self.state.last_timeout_certificate,
        )
        return data, signature, self.state

    def make_timeout(
        self, round_: int, high_qc: QuorumCertificate, tc: TimeoutCertificate | None
    ) -> tuple[TimeoutData, bytes, SafetyState] | None:
        """A signed timeout for `round_` carrying `high_qc`, or None if unsafe."""
        if high_qc.epoch != self.state.epoch:
            return None
        if not self._safe_to_timeout(round_, high_qc.round, tc):
            return None
        data = TimeoutData(self._chain_id, self.state.epoch, round_, high_qc.round)
        signature = sign(self._suite, self._private_key, data)
        remembered_tc = self.state.last_timeout_certificate
        if tc is not None and tc.round + 1 == round_:
            remembered_tc = tc
        if round_ > self.state.highest_vote_round or remembered_tc != (
            self.state.last_timeout_certificate
        ):
            self.state = SafetyState(
                epoch=self.state.epoch,
                highest_vote_round=max(round_, self.state.highest_vote_round),
                highest_qc=self.state.highest_qc,
                last_vote=self.state.last_vote,
                last_vote_signature=self.state.last_vote_signature,
                last_timeout_certificate=remembered_tc,
            )
        return data, signature, self.state

    def _safe_to_vote(self, block_round: int, qc_round: int, tc: TimeoutCertificate | None) -> bool:
        if not self._weakening.skip_vote_round_check and block_round <= max(
            self.state.highest_vote_round, qc_round
        ):
            return False
        if block_round == qc_round + 1:
            return True
        if self._weakening.skip_lock_check:
            return True
        return tc is not None and block_round == tc.round + 1 and qc_round >= tc.highest_qc_round

    def _safe_to_timeout(self, round_: int, qc_round: int, tc: TimeoutCertificate | None) -> bool:
        if qc_round < self.highest_qc_round and not self._weakening.skip_lock_check:
            return False
        if round_ <= max(self.state.highest_vote_round - 1, qc_round):
            return False
        return round_ == qc_round + 1 or (tc is not None and round_ == tc.round + 1)
