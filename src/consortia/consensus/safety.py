"""Safety rules: the only code that decides whether this replica signs a vote, a timeout or a
proposal.

Everything that can make two honest replicas commit different blocks is decided here, in a
few rules taken from Jolteon (DiemBFT v4), written out in docs/consensus.md section "Safety":

* vote for a block of round r only if r > max(highest_vote_round, qc_round) and either the
  block extends the QC of round r-1 (consecutive) or it carries a timeout certificate of
  round r-1 and its QC is at least the highest QC round named in that certificate;
* sign a timeout for round r only if its high QC is at least the highest QC round this
  replica has voted on (the lock), r > max(highest_vote_round - 1, qc_round), and r follows
  the QC's round or the last TC's round;
* a vote or timeout raises `highest_vote_round` to r, so after timing out in r the replica
  never votes in r;
* sign a proposal for round r only if r > highest_proposal_round: an honest leader never
  equivocates, even across a restart;
* sign an execution header (the state a committed block led to, `types.execution`) only of
  this chain, and never two different headers for one height in this process. Not part of
  the consensus rules and not persisted: execution is deterministic, so after a restart the
  node signs the same header again; signing it only lets the node's state be certified.

A refusal is a value, not `None`: `Refusal` names the rule that refused and the rounds it
compared, so a replica's metrics and a reviewer's trace say exactly why nothing was signed.

The state these rules keep is returned with every signature and must be made durable by
the caller before the signed message leaves (the replica holds it until `PersistDone`). The
module never reads a clock, the disk or randomness, and never sees the network.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import msgspec

from consortia.crypto import Suite
from consortia.types.consensus import (
    BlockHeader,
    ProposalData,
    QuorumCertificate,
    SafetyState,
    TimeoutCertificate,
    TimeoutData,
    VoteData,
)
from consortia.types.encoding import encode
from consortia.types.execution import ExecutionHeader
from consortia.types.signing import SigningDomain, sign


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

# Execution headers remembered (by height) to refuse signing a different one for a height.
EXECUTION_SIGNED_MAX = 1024

# The weakenings by name, as `consortia sim --weaken NAME` and a run's replay command spell them.
WEAKENING_NAMES: tuple[str, ...] = tuple(Weakening.__dataclass_fields__)

# Every rule that can refuse a signature. A closed set: metrics count refusals by it.
RefusalRule = Literal[
    # votes
    "vote_other_epoch",  # the block is not of the safety state's epoch
    "already_voted_in_round",  # a different block of this round was already voted for
    "vote_round_not_above",  # round <= max(highest_vote_round, the block's QC round)
    "not_consecutive_without_tc",  # the QC is not of round-1 and no TC of round-1 came with it
    "tc_not_previous_round",  # a TC came, but not of round-1
    "qc_below_tc_high_qc",  # the QC is below the highest QC round the TC names
    # proposals
    "proposal_other_epoch",  # the block is not of the safety state's epoch
    "already_proposed_in_round",  # this leader already signed a proposal in this round or later
    # timeouts
    "timeout_other_epoch",  # the high QC is not of the safety state's epoch
    "timeout_qc_below_lock",  # the high QC is below the highest QC voted on (the lock)
    "timeout_round_not_above",  # round <= max(highest_vote_round - 1, the high QC's round)
    "timeout_round_not_following",  # round follows neither the high QC nor the last TC
    # execution headers
    "execution_other_chain",  # the header is of another chain
    "execution_already_signed",  # a different header was already signed for its height
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The safety rules would not sign: which rule refused, with the rounds it compared (for
    an execution header: its height, the rounds being the safety state's)."""

    rule: RefusalRule
    round: int  # the round asked for (0 for an execution header)
    qc_round: int  # the round of the QC the block extends (vote) or the high QC (timeout)
    highest_vote_round: int
    highest_qc_round: int  # the lock
    tc_round: int | None = None
    tc_highest_qc_round: int | None = None
    height: int | None = None  # the execution header's height; None for the other rules

    def __str__(self) -> str:
        if self.height is not None:
            return f"{self.rule}: height {self.height}"
        tc = "" if self.tc_round is None else f", tc {self.tc_round}/{self.tc_highest_qc_round}"
        return (
            f"{self.rule}: round {self.round}, qc {self.qc_round}, voted "
            f"{self.highest_vote_round}, lock {self.highest_qc_round}{tc}"
        )


class SafetyRules:
    def __init__(
        self,
        suite: Suite,
        private_key: bytes,
        chain_id: str,
        state: SafetyState,
        weakening: Weakening = NO_WEAKENING,
        *,
        domain: SigningDomain,
    ) -> None:
        self._domain = domain
        self._suite = suite
        # Held for the replica's life: it signs every round (votes, timeouts, proposals).
        self._private_key = suite.signing_key(private_key)
        self._chain_id = chain_id
        self.state = state
        self._weakening = weakening
        # height -> the encoding of the execution header signed for it (the latest ones).
        self._executed: OrderedDict[int, bytes] = OrderedDict()

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
    ) -> tuple[VoteData, bytes, SafetyState] | Refusal:
        """A signed vote for the block and the state to persist first, or why not.

        The caller has already checked the block's certificate and the TC's signatures.
        """
        if header.epoch != self.state.epoch:
            return self._refusal("vote_other_epoch", header.round, header.justify.round, tc)
        previous = self.state.last_vote
        if previous is not None and previous.round == header.round:
            if previous.block_id == block_id and self.state.last_vote_signature is not None:
                # The same vote again (a restart or a retransmission): never a second one.
                return previous, self.state.last_vote_signature, self.state
            if not self._weakening.skip_vote_round_check:
                return self._refusal(
                    "already_voted_in_round", header.round, header.justify.round, tc
                )
        refused = self._vote_rule(header.round, header.justify.round, tc)
        if refused is not None:
            return self._refusal(refused, header.round, header.justify.round, tc)
        data = VoteData(self._chain_id, header.epoch, header.round, block_id, header.height)
        signature = sign(self._suite, self._private_key, data, self._domain)
        highest_qc = self.state.highest_qc
        if header.justify.round > highest_qc.round:
            highest_qc = header.justify
        self.state = msgspec.structs.replace(
            self.state,
            highest_vote_round=max(self.state.highest_vote_round, header.round),
            highest_qc=highest_qc,
            last_vote=data,
            last_vote_signature=signature,
            # The TC that justified this round goes to disk with the vote: after a restart the
            # replica resumes in this round and can still time out in it.
            last_timeout_certificate=self._remembered_tc(header.round, tc),
        )
        return data, signature, self.state

    def make_proposal(
        self, header: BlockHeader, block_id: bytes
    ) -> tuple[bytes, SafetyState] | Refusal:
        """The leader's signature on its block, and the state to persist before it leaves, or
        why not: a leader signs at most one proposal a round, across restarts."""
        if header.epoch != self.state.epoch:
            return self._refusal("proposal_other_epoch", header.round, header.justify.round, None)
        if header.round <= self.state.highest_proposal_round:
            return self._refusal(
                "already_proposed_in_round", header.round, header.justify.round, None
            )
        data = ProposalData(self._chain_id, header.epoch, header.round, block_id)
        signature = sign(self._suite, self._private_key, data, self._domain)
        self.state = msgspec.structs.replace(self.state, highest_proposal_round=header.round)
        return signature, self.state

    def make_timeout(
        self, round_: int, high_qc: QuorumCertificate, tc: TimeoutCertificate | None
    ) -> tuple[TimeoutData, bytes, SafetyState] | Refusal:
        """A signed timeout for `round_` carrying `high_qc`, or why not."""
        if high_qc.epoch != self.state.epoch:
            return self._refusal("timeout_other_epoch", round_, high_qc.round, tc)
        refused = self._timeout_rule(round_, high_qc.round, tc)
        if refused is not None:
            return self._refusal(refused, round_, high_qc.round, tc)
        data = TimeoutData(self._chain_id, self.state.epoch, round_, high_qc.round)
        signature = sign(self._suite, self._private_key, data, self._domain)
        remembered_tc = self._remembered_tc(round_, tc)
        if round_ > self.state.highest_vote_round or remembered_tc != (
            self.state.last_timeout_certificate
        ):
            self.state = msgspec.structs.replace(
                self.state,
                highest_vote_round=max(round_, self.state.highest_vote_round),
                last_timeout_certificate=remembered_tc,
            )
        return data, signature, self.state

    def sign_execution(self, header: ExecutionHeader) -> bytes | Refusal:
        """This validator's signature of an execution header, or why not: it is of another
        chain, or another header was already signed for its height (execution went wrong:
        the caller stops)."""
        if header.chain_id != self._chain_id:
            return self._execution_refusal("execution_other_chain", header.height)
        encoded = encode(header)
        signed = self._executed.get(header.height)
        if signed is not None and signed != encoded:
            return self._execution_refusal("execution_already_signed", header.height)
        self._executed[header.height] = encoded
        while len(self._executed) > EXECUTION_SIGNED_MAX:
            self._executed.popitem(last=False)
        return sign(self._suite, self._private_key, header, self._domain)

    def _remembered_tc(
        self, round_: int, tc: TimeoutCertificate | None
    ) -> TimeoutCertificate | None:
        """The TC to keep on disk after signing in `round_`: `tc` when it justified the round."""
        if tc is not None and tc.round + 1 == round_:
            return tc
        return self.state.last_timeout_certificate

    def _refusal(
        self, rule: RefusalRule, round_: int, qc_round: int, tc: TimeoutCertificate | None
    ) -> Refusal:
        return Refusal(
            rule=rule,
            round=round_,
            qc_round=qc_round,
            highest_vote_round=self.state.highest_vote_round,
            highest_qc_round=self.highest_qc_round,
            tc_round=None if tc is None else tc.round,
            tc_highest_qc_round=None if tc is None else tc.highest_qc_round,
        )

    def _execution_refusal(self, rule: RefusalRule, height: int) -> Refusal:
        return Refusal(
            rule=rule,
            round=0,
            qc_round=self.highest_qc_round,
            highest_vote_round=self.state.highest_vote_round,
            highest_qc_round=self.highest_qc_round,
            height=height,
        )

    def _vote_rule(
        self, block_round: int, qc_round: int, tc: TimeoutCertificate | None
    ) -> RefusalRule | None:
        """The rule that forbids voting for a block of `block_round`, or None when safe."""
        if not self._weakening.skip_vote_round_check and block_round <= max(
            self.state.highest_vote_round, qc_round
        ):
            return "vote_round_not_above"
        if block_round == qc_round + 1 or self._weakening.skip_lock_check:
            return None
        if tc is None:
            return "not_consecutive_without_tc"
        if block_round != tc.round + 1:
            return "tc_not_previous_round"
        if qc_round < tc.highest_qc_round:
            return "qc_below_tc_high_qc"
        return None

    def _timeout_rule(
        self, round_: int, qc_round: int, tc: TimeoutCertificate | None
    ) -> RefusalRule | None:
        """The rule that forbids a timeout for `round_`, or None when safe."""
        if qc_round < self.highest_qc_round and not self._weakening.skip_lock_check:
            return "timeout_qc_below_lock"
        if round_ <= max(self.state.highest_vote_round - 1, qc_round):
            return "timeout_round_not_above"
        if round_ == qc_round + 1 or (tc is not None and round_ == tc.round + 1):
            return None
        return "timeout_round_not_following"
