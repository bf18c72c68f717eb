"""Proposals: the checks a proposal must pass before it is voted on, and the leader's block.

Owns the one-proposal-per-round record and the proposals waiting for a missing parent, and
the order of the checks (cheap ones first: nothing is hashed or verified for a proposal that
a size or round check already refuses). Building the block a leader proposes is here too, so
what a leader makes and what a voter accepts sit side by side: the payload request, the
block, and its proposal signed through the safety rules.

Never votes, signs a vote, changes rounds or touches the tree, and never decides whether to
propose: `replica.py` does, after these checks pass. Pure: no clock, no I/O; refusals are
counted by reason, nothing raises.
"""

from __future__ import annotations

from collections import OrderedDict

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.config import Params, ReplicaSetup
from consortia.consensus.events import Counters, DropReason, PayloadReady, RequestPayload
from consortia.consensus.leader import LeaderElection
from consortia.consensus.safety import Refusal, SafetyRules
from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import (
    Block,
    BlockHeader,
    Proposal,
    ProposalData,
    SafetyState,
    TimeoutCertificate,
)
from consortia.types.signing import block_id, merkle_root, verify


def justified_round(header: BlockHeader, tc: TimeoutCertificate | None) -> bool:
    """A block's round follows its QC's, or a TC of the round before it."""
    if header.round == header.justify.round + 1:
        return True
    return tc is not None and tc.epoch == header.epoch and tc.round + 1 == header.round


class Proposals:
    def __init__(self, setup: ReplicaSetup, counters: Counters, leaders: LeaderElection) -> None:
        self._setup = setup
        self.leaders = leaders  # replaced by the replica at each new epoch
        self._params: Params = setup.params
        self._counters = counters
        # round -> the one proposal accepted from that round's leader. Invariant: rounds from
        # the replica's round - 1 on (`prune`); one id per round unless a test weakens it.
        self.seen: dict[int, bytes] = {}
        # Proposals whose parent is being fetched: id -> (sender, proposal). Invariant: at
        # most params.pending_proposals_max, oldest evicted first.
        self.pending: OrderedDict[bytes, tuple[bytes, Proposal]] = OrderedDict()

    def new_epoch(self, leaders: LeaderElection) -> None:
        """A new epoch: its leader election; nothing of the old epoch's kept."""
        self.leaders = leaders
        self.seen.clear()
        self.pending.clear()

    def prune(self, below_round: int) -> None:
        for stale in [r for r in self.seen if r < below_round]:
            del self.seen[stale]

    def certificates_valid(
        self, proposal: Proposal, validators: ValidatorSet, epoch_root_id: bytes
    ) -> bool:
        """The proposal's chain, author and certificates: checked before anything else, since
        its certificates are then adopted even when the proposal itself is refused."""
        header = proposal.block.header
        tc = proposal.timeout_certificate
        reason: DropReason | None = None
        if header.chain_id != self._setup.chain_id:
            reason = "wrong_chain"
        elif header.author not in validators:
            reason = "non_member"
        elif not validators.verify_qc(header.justify, epoch_root_id=epoch_root_id):
            reason = "bad_certificate"
        elif tc is not None and not validators.verify_tc(tc, epoch_root_id=epoch_root_id):
            reason = "bad_timeout_certificate"
        if reason is not None:
            self._counters.drop(reason)
            return False
        return True

    def valid(
        self,
        proposal: Proposal,
        new_id: bytes,
        validators: ValidatorSet,
        now_ms: int,
        round_: int,
    ) -> bool:
        """Everything about the proposal itself (then its round is marked as seen), and that
        it is of the replica's current round `round_`."""
        header = proposal.block.header
        reason = self._refusal(proposal, new_id, validators, now_ms)
        if reason is None:
            self.seen[header.round] = new_id
            if header.round != round_:
                reason = "proposal_not_current_round"
        if reason is not None:
            self._counters.drop(reason)
            return False
        return True

    def _refusal(
        self,
        proposal: Proposal,
        new_id: bytes,
        validators: ValidatorSet,
        now_ms: int,
    ) -> DropReason | None:
        header = proposal.block.header
        params = self._params
        if header.protocol_version != self._setup.protocol_version:
            return "wrong_protocol_version"
        if header.author != self.leaders.leader(header.round):
            return "wrong_leader"
        if (
            header.parent_id != header.justify.block_id
            or header.height != header.justify.height + 1
            or header.round <= header.justify.round
        ):
            return "malformed_proposal"
        payload = proposal.block.payload
        if (
            len(payload) > params.block_payload_items_max
            or sum(len(item) for item in payload) > params.block_bytes_max
        ):
            return "oversized_block"
        if header.timestamp_ms > now_ms + params.clock_skew_ms_max:
            return "timestamp_in_future"
        if not justified_round(header, proposal.timeout_certificate):
            return "unjustified_round"
        if (
            self.seen.get(header.round, new_id) != new_id
            and not self._setup.weakening.skip_vote_round_check
        ):
            # One proposal per round from its leader: a second one is equivocation, and
            # accepting it would let one faulty leader fill the block tree.
            return "equivocating_proposal"
        index = validators.index_of.get(header.author)
        data = ProposalData(self._setup.chain_id, header.epoch, header.round, new_id)
        if index is None or not verify(
            self._setup.suite,
            validators.validators[index].public_key,
            data,
            proposal.signature,
            validators.domain,
        ):
            return "bad_signature"
        if header.payload_root != merkle_root(self._setup.suite, payload):
            return "bad_payload_root"
        return None

    def admissible(self, proposal: Proposal, tree: BlockTree, epoch: int) -> bool:
        """What a proposal whose parent is in the tree must also satisfy to be inserted."""
        block = proposal.block
        header = block.header
        parent = tree.get(header.parent_id)
        assert parent is not None
        reason: DropReason | None = None
        if header.timestamp_ms <= parent.header.timestamp_ms:
            reason = "timestamp_not_increasing"
        elif tree.ends_epoch(header.parent_id, epoch) and (
            block.payload or header.next_epoch is not None
        ):
            reason = "payload_after_epoch_end"
        elif header.next_epoch is not None and not (
            header.next_epoch.epoch == epoch + 1
            and self._setup.checker.check_epoch_change(header, header.next_epoch)
        ):
            reason = "bad_epoch_change"
        elif not self._setup.checker.check_payload(header, block.payload):
            reason = "bad_payload"
        if reason is not None:
            self._counters.drop(reason)
            return False
        return True

    def request(self, tree: BlockTree, epoch: int, round_: int) -> RequestPayload | None:
        """Ask the node for the payload of this leader's block of `round_`, extending the high
        QC's block; None while that block is being fetched (propose when it arrives)."""
        if tree.high_qc.block_id not in tree:
            return None
        return RequestPayload(
            epoch=epoch,
            round=round_,
            parent_id=tree.high_qc.block_id,
            items_max=self._params.block_payload_items_max,
            bytes_max=self._params.block_bytes_max,
        )

    def propose(
        self,
        safety: SafetyRules,
        tree: BlockTree,
        ready: PayloadReady,
        now_ms: int,
        last_tc: TimeoutCertificate | None,
    ) -> tuple[Proposal, SafetyState] | None:
        """The leader's signed proposal of the offered payload (`build`) and the safety state
        to persist before it leaves; None when there is no block to build, or (counted by
        rule) when the safety rules refuse to sign it."""
        built = self.build(tree, ready, now_ms, last_tc)
        if built is None:
            return None
        new_id, block, tc = built
        signed = safety.make_proposal(block.header, new_id)
        if isinstance(signed, Refusal):
            self._counters.drop("unsafe_to_propose")
            self._counters.refuse(signed.rule)
            return None
        signature, state = signed
        return Proposal(block=block, signature=signature, timeout_certificate=tc), state

    def build(
        self,
        tree: BlockTree,
        ready: PayloadReady,
        now_ms: int,
        last_tc: TimeoutCertificate | None,
    ) -> tuple[bytes, Block, TimeoutCertificate | None] | None:
        """The leader's block of the offered payload, its id and the TC to send with it,
        extending the high QC's block (None while that block is being fetched). Nothing but
        an empty block follows a block that ends the epoch, and a TC goes along when the
        round was entered through one. The safety rules sign it (`SafetyRules.make_proposal`)."""
        setup = self._setup
        suite = setup.suite
        qc = tree.high_qc
        parent = tree.get(qc.block_id)
        if parent is None:
            return None
        items = list(ready.items)[: self._params.block_payload_items_max]
        next_epoch = ready.next_epoch
        if tree.ends_epoch(qc.block_id, ready.epoch):
            items, next_epoch = [], None
        header = BlockHeader(
            chain_id=setup.chain_id,
            protocol_version=setup.protocol_version,
            epoch=ready.epoch,
            round=ready.round,
            height=parent.header.height + 1,
            parent_id=qc.block_id,
            justify=qc,
            author=setup.node_id,
            timestamp_ms=max(now_ms, parent.header.timestamp_ms + 1),
            payload_root=merkle_root(suite, items),
            payload_count=len(items),
            next_epoch=next_epoch,
        )
        tc = last_tc if qc.round + 1 != ready.round else None
        return block_id(suite, header), Block(header=header, payload=items), tc

    def buffer(self, sender: bytes, new_id: bytes, proposal: Proposal) -> None:
        """Keep a proposal until its parent arrives."""
        self.pending[new_id] = (sender, proposal)
        while len(self.pending) > self._params.pending_proposals_max:
            self.pending.popitem(last=False)
            self._counters.drop("pending_proposals_full")

    def take_ready(
        self, tree: BlockTree, epoch: int, round_: int
    ) -> list[tuple[bytes, bytes, Proposal]]:
        """The buffered proposals whose parent is now in the tree, removed from the buffer;
        only those of the replica's current `epoch` and `round_` are returned."""
        ready = [
            (new_id, sender, proposal)
            for new_id, (sender, proposal) in self.pending.items()
            if proposal.block.header.parent_id in tree
        ]
        for new_id, _, _ in ready:
            del self.pending[new_id]
        return [
            (new_id, sender, proposal)
            for new_id, sender, proposal in ready
            if (proposal.block.header.epoch, proposal.block.header.round) == (epoch, round_)
        ]

    def check(self) -> str | None:
        """The first broken invariant, or None."""
        if len(self.pending) > self._params.pending_proposals_max:
            return f"{len(self.pending)} proposals wait for a parent, above the bound"
        return None
