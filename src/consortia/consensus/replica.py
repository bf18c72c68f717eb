"""One validator's consensus state machine: `Replica.handle(event) -> list[Action]`.

Theory of operation (docs/consensus.md has the full protocol and its safety argument):

* Rounds. A replica is in one round at a time. It enters round r+1 on seeing a QC of round r
  (votes for the block of round r) or a TC of round r (timeouts of round r). The leader of
  round r proposes a block extending the highest QC it knows, carrying that QC and, if it
  entered r through a TC, the TC.
* Votes go only to the next round's leader, which aggregates them into a QC and carries it in
  its proposal: the normal case is linear in the number of validators.
* A replica whose round timer fires broadcasts a signed timeout with its highest QC; a quorum
  of timeouts is a TC. Timers back off exponentially while rounds keep failing.
* Two-chain commit: a QC for block C commits C's parent P (and P's ancestors) when
  P.round + 1 == C.round.
* Missing blocks are fetched by id from the peer that named them and checked by hash.
* An epoch ends when a block carrying `next_epoch` is committed; descendants of such a block
  in the old epoch carry no payload.

Every signature goes through `SafetyRules`; the signed message is held until the driver
acknowledges that the new safety state is durable (`Persist` then `PersistDone`).

The replica drops and counts what it cannot use (bad signatures, non-members, stale rounds,
duplicates, malformed content); nothing a peer sends can make it raise. Buffers are bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.config import Params, ReplicaSetup, root_qc_for
from consortia.consensus.events import (
    Action,
    Broadcast,
    Commit,
    Counters,
    EnterEpoch,
    Event,
    Halt,
    MessageReceived,
    PayloadReady,
    Persist,
    PersistDone,
    RequestPayload,
    Send,
    ServeBlocks,
    SetTimer,
    Start,
    TimerFired,
)
from consortia.consensus.leader import LeaderElection
from consortia.consensus.safety import SafetyRules
from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import (
    BLOCK_REQUEST_COUNT_MAX,
    COMMIT_PROOF_HEADERS_MAX,
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    EpochChangeRequest,
    EpochChangeResponse,
    EpochConfig,
    Proposal,
    ProposalData,
    QuorumCertificate,
    SafetyState,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    Vote,
    VoteData,
)
from consortia.types.encoding import MESSAGE_SIZE_MAX
from consortia.types.signing import block_id, merkle_root, sign, signing_bytes, verify

# Recently committed blocks kept in memory to answer peers' block requests.
RECENT_COMMITTED_MAX = 1024
# Timeout back-off stops growing after this many consecutive failed rounds.
BACKOFF_EXPONENT_MAX = 16
# Epoch-change proofs kept to help lagging replicas across epochs.
EPOCH_PROOFS_MAX = 64
# Peers remembered when rate-limiting the epoch proofs sent to replicas left behind.
EPOCH_HELP_PEERS_MAX = 1024
# Block fetches in flight at once.
FETCHES_MAX = 4
# Payload bytes in one block response (besides its first block): half the message limit, so
# a response always decodes on the other side.
RESPONSE_PAYLOAD_BYTES_MAX = MESSAGE_SIZE_MAX // 2


@dataclass(slots=True)
class _Deferred:
    """A signed message held until the safety state that allows it is durable."""

    sequence: int
    outgoing: list[Action]
    loopback: list[ConsensusMessage]


@dataclass(slots=True)
class _Fetch:
    """Blocks being fetched backwards from a trusted id until they connect to the tree."""

    target_id: bytes
    peer: bytes
    chain: list[tuple[bytes, Block]]  # newest first
    next_id: bytes
    commit_through: bool  # the target is known committed (an epoch change proof)
    started_ms: int


class Replica:
    def __init__(self, setup: ReplicaSetup) -> None:
        self.setup = setup
        self.node_id = setup.node_id
        self.chain_id = setup.chain_id
        self.suite = setup.suite
        self.params: Params = setup.params
        self.counters = Counters()
        self.now_ms = 0
        self.halted: str | None = None

        root_id = block_id(self.suite, setup.root.header)
        assert setup.root_qc.block_id == root_id, "root QC must certify the root"
        self.epoch = setup.epoch_config.epoch
        self.validators = self._validator_set(setup.epoch_config)
        self.epoch_root_id = setup.epoch_root_id
        self.tree = BlockTree(setup.root, root_id, setup.root_qc)
        state = setup.safety_state
        if state is None or state.epoch < self.epoch:
            state = SafetyState(epoch=self.epoch, highest_vote_round=0, highest_qc=setup.root_qc)
        self.safety = SafetyRules(
            self.suite, setup.private_key, self.chain_id, state, setup.weakening
        )
        if state.highest_qc.round > self.tree.high_qc.round:
            self.tree.high_qc = state.highest_qc
        self.leaders = self._leader_election()
        self._replay_history(setup.recent_committed)
        for voted in sorted(setup.voted_blocks, key=lambda b: b.header.height):
            if voted.header.epoch == self.epoch:
                self.tree.insert(block_id(self.suite, voted.header), voted)

        self.round = 0
        self.last_tc: TimeoutCertificate | None = None
        self.consecutive_timeouts = 0
        self.proposed_round = 0
        self.timed_out_round = 0
        self._payload_requested_round = 0
        self._epoch_request_ms = -(10**12)
        self._epoch_help_ms: OrderedDict[bytes, int] = OrderedDict()
        self.high_commit_qc: QuorumCertificate | None = None
        # round -> validator index -> (block id, height, signature)
        self._votes: dict[int, dict[int, tuple[bytes, int, bytes]]] = {}
        # round -> validator index -> (high QC round, signature)
        self._timeouts: dict[int, dict[int, tuple[int, bytes]]] = {}
        # round -> the one proposal accepted from that round's leader
        self._proposals_seen: dict[int, bytes] = {}
        self._pending_proposals: OrderedDict[bytes, tuple[bytes, Proposal]] = OrderedDict()
        self._fetches: dict[bytes, _Fetch] = {}
        self._deferred: list[_Deferred] = []
        self._persist_sequence = 0
        self._recent_committed: OrderedDict[bytes, Block] = OrderedDict()
        self._epoch_proofs: OrderedDict[int, EpochChangeResponse] = OrderedDict()
        for response in setup.epoch_proofs:
            self._keep_epoch_proof(response)
        self._pending_epoch_change: EpochChangeResponse | None = None
        self._out: list[Action] = []

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions for the driver, in order."""
        if self.halted is not None:
            return []
        self.now_ms = max(self.now_ms, event.now_ms)
        self._out = []
        self._expire_fetches()
        if isinstance(event, Start):
            self._start()
        elif isinstance(event, MessageReceived):
            self._on_message(event.sender, event.message)
        elif isinstance(event, TimerFired):
            if event.epoch == self.epoch and event.round == self.round:
                self._local_timeout()
        elif isinstance(event, PayloadReady):
            self._on_payload(event)
        elif isinstance(event, PersistDone):
            self._on_persisted(event.sequence)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        start_round = max(self.tree.high_qc.round + 1, 1)
        tc = self.safety.state.last_timeout_certificate
        if tc is not None and tc.epoch == self.epoch and tc.round + 1 > start_round:
            # Restarted after timing out in a round entered through this TC: resume there.
            start_round = tc.round + 1
            self.last_tc = tc
        self.round = 0
        self._enter_round(start_round)

    def _validator_set(self, config: EpochConfig) -> ValidatorSet:
        quorum_override = None
        if self.setup.weakening.quorum_is_f_plus_one:
            quorum_override = config.fault_power + 1
        return ValidatorSet(config, self.suite, self.chain_id, quorum_override=quorum_override)

    def _leader_election(self) -> LeaderElection:
        return LeaderElection(
            self.validators, self.params.reputation_window, reputation=self.params.leader_reputation
        )

    def _replay_history(self, blocks: list[Block]) -> None:
        previous_round = 0
        for block in blocks:
            header = block.header
            if header.epoch != self.epoch:
                previous_round = 0
                continue
            self.leaders.record_commit(
                header.round, header.author, previous_round, self._signer_ids(header.justify)
            )
            previous_round = header.round

    # ------------------------------------------------------------------ rounds

    def _enter_round(self, new_round: int) -> None:
        if new_round <= self.round:
            return
        self.round = new_round
        for buffer in (self._votes, self._timeouts, self._proposals_seen):
            for stale in [r for r in buffer if r < new_round - 1]:
                del buffer[stale]
        exponent = min(self.consecutive_timeouts, BACKOFF_EXPONENT_MAX)
        delay = self.params.round_timeout_ms
        for _ in range(exponent):
            delay = delay * self.params.timeout_backoff_percent // 100
            if delay >= self.params.round_timeout_ms_max:
                break
        delay = min(delay, self.params.round_timeout_ms_max)
        self._out.append(SetTimer(self.epoch, new_round, delay))
        if self._leader(new_round) == self.node_id:
            self._request_payload()

    def _leader(self, round_: int) -> bytes:
        return self.leaders.leader(round_)

    def _request_payload(self) -> None:
        if self.proposed_round >= self.round or self._payload_requested_round >= self.round:
            return
        parent = self.tree.get(self.tree.high_qc.block_id)
        if parent is None:
            return  # the QC's block is being fetched; propose when it arrives
        self._payload_requested_round = self.round
        self._out.append(
            RequestPayload(
                epoch=self.epoch,
                round=self.round,
                parent_id=self.tree.high_qc.block_id,
                items_max=self.params.block_payload_items_max,
                bytes_max=self.params.block_bytes_max,
            )
        )

    def _on_payload(self, event: PayloadReady) -> None:
        if event.epoch != self.epoch or event.round != self.round:
            return
        if self.proposed_round >= self.round or self._leader(self.round) != self.node_id:
            return
        qc = self.tree.high_qc
        parent = self.tree.get(qc.block_id)
        if parent is None:
            return
        items = list(event.items)[: self.params.block_payload_items_max]
        next_epoch = event.next_epoch
        if self._in_reconfiguration_suffix(qc.block_id):
            items, next_epoch = [], None
        header = BlockHeader(
            chain_id=self.chain_id,
            protocol_version=self.setup.protocol_version,
            epoch=self.epoch,
            round=self.round,
            height=parent.header.height + 1,
            parent_id=qc.block_id,
            justify=qc,
            author=self.node_id,
            timestamp_ms=max(self.now_ms, parent.header.timestamp_ms + 1),
            payload_root=merkle_root(self.suite, items),
            payload_count=len(items),
            next_epoch=next_epoch,
        )
        block = Block(header=header, payload=items)
        new_id = block_id(self.suite, header)
        signature = sign(
            self.suite,
            self.setup.private_key,
            ProposalData(self.chain_id, self.epoch, self.round, new_id),
        )
        tc = self.last_tc if qc.round + 1 != self.round else None
        self.proposed_round = self.round
        proposal = Proposal(block=block, signature=signature, timeout_certificate=tc)
        self._out.append(Broadcast(proposal))
        self._on_proposal(self.node_id, proposal)

    # ------------------------------------------------------------------ messages

    def _on_message(self, sender: bytes, message: ConsensusMessage) -> None:
        if isinstance(message, Proposal):
            self._on_proposal(sender, message)
        elif isinstance(message, Vote):
            self._on_vote(sender, message)
        elif isinstance(message, Timeout):
            self._on_timeout(sender, message)
        elif isinstance(message, BlockRequest):
            self._on_block_request(sender, message)
        elif isinstance(message, BlockResponse):
            self._on_block_response(sender, message)
        elif isinstance(message, EpochChangeRequest):
            self._on_epoch_request(sender, message)
        elif isinstance(message, EpochChangeResponse):
            self._on_epoch_response(sender, message)

    def _check_epoch(self, sender: bytes, epoch: int) -> bool:
        """True for the current epoch; asks for a proof when the sender is ahead, and sends
        one when the sender is behind, so replicas left in an ended epoch catch up."""
        if epoch == self.epoch:
            return True
        if epoch < self.epoch and epoch in self._epoch_proofs:
            last_sent = self._epoch_help_ms.get(sender, -(10**12))
            if self.now_ms - last_sent >= self.params.round_timeout_ms:
                self._epoch_help_ms[sender] = self.now_ms
                if len(self._epoch_help_ms) > EPOCH_HELP_PEERS_MAX:
                    self._epoch_help_ms.popitem(last=False)
                self._out.append(Send(sender, self._epoch_proofs[epoch]))
        if (
            epoch > self.epoch
            and self._pending_epoch_change is None
            and self.now_ms - self._epoch_request_ms >= self.params.round_timeout_ms
        ):
            self._epoch_request_ms = self.now_ms
            self._out.append(Send(sender, EpochChangeRequest(epoch=self.epoch)))
        self.counters.drop("other_epoch")
        return False

    def _on_proposal(self, sender: bytes, proposal: Proposal) -> None:
        header = proposal.block.header
        if not self._check_epoch(sender, header.epoch):
            return
        new_id = block_id(self.suite, header)
        # Certificates are self-authenticating: learn from them even when this replica
        # disagrees about the leader (its committed history may lag), so it catches up.
        if not self._valid_certificates(proposal):
            return
        self._process_qc(header.justify, sender)
        if header.epoch != self.epoch:
            return  # its certificate ended the epoch
        if proposal.timeout_certificate is not None:
            self._process_tc(proposal.timeout_certificate)
        if not self._valid_proposal(proposal, new_id):
            return
        if header.round != self.round:
            self.counters.drop("proposal_not_current_round")
            return
        if header.parent_id not in self.tree:
            self._buffer_proposal(sender, new_id, proposal)
            return
        self._accept_proposal(sender, new_id, proposal)

    def _valid_certificates(self, proposal: Proposal) -> bool:
        header = proposal.block.header
        tc = proposal.timeout_certificate
        reason = None
        if header.chain_id != self.chain_id:
            reason = "wrong_chain"
        elif header.author not in self.validators:
            reason = "non_member"
        elif not self.validators.verify_qc(header.justify, epoch_root_id=self.epoch_root_id):
            reason = "bad_certificate"
        elif tc is not None and not self.validators.verify_tc(tc):
            reason = "bad_timeout_certificate"
        if reason is not None:
            self.counters.drop(reason)
            return False
        return True

    def _valid_proposal(self, proposal: Proposal, new_id: bytes) -> bool:
        header = proposal.block.header
        reason = None
        if header.protocol_version != self.setup.protocol_version:
            reason = "wrong_protocol_version"
        elif header.author != self._leader(header.round):
            reason = "wrong_leader"
        elif (
            header.parent_id != header.justify.block_id
            or header.height != header.justify.height + 1
            or header.round <= header.justify.round
        ):
            reason = "malformed_proposal"
        elif (
            len(proposal.block.payload) > self.params.block_payload_items_max
            or sum(len(item) for item in proposal.block.payload) > self.params.block_bytes_max
        ):
            reason = "oversized_block"
        elif header.timestamp_ms > self.now_ms + self.params.clock_skew_ms_max:
            reason = "timestamp_in_future"
        elif not self._justified_round(header, proposal.timeout_certificate):
            reason = "unjustified_round"
        elif (
            self._proposals_seen.get(header.round, new_id) != new_id
            and not self.setup.weakening.skip_vote_round_check
        ):
            # One proposal per round from its leader: a second one is equivocation, and
            # accepting it would let one faulty leader fill the block tree.
            reason = "equivocating_proposal"
        elif not self._verify_signed(
            header.author,
            ProposalData(self.chain_id, header.epoch, header.round, new_id),
            proposal.signature,
        ):
            reason = "bad_signature"
        elif header.payload_root != merkle_root(self.suite, proposal.block.payload):
            reason = "bad_payload_root"
        if reason is None:
            self._proposals_seen[header.round] = new_id
        if reason is not None:
            self.counters.drop(reason)
            return False
        return True

    @staticmethod
    def _justified_round(header: BlockHeader, tc: TimeoutCertificate | None) -> bool:
        if header.round == header.justify.round + 1:
            return True
        return tc is not None and tc.epoch == header.epoch and tc.round + 1 == header.round

    def _verify_signed(
        self, author: bytes, payload: VoteData | TimeoutData | ProposalData, signature: bytes
    ) -> bool:
        index = self.validators.index_of.get(author)
        if index is None:
            return False
        public_key = self.validators.validators[index].public_key
        return verify(self.suite, public_key, payload, signature)

    def _buffer_proposal(self, sender: bytes, new_id: bytes, proposal: Proposal) -> None:
        self._pending_proposals[new_id] = (sender, proposal)
        while len(self._pending_proposals) > self.params.pending_proposals_max:
            self._pending_proposals.popitem(last=False)
            self.counters.drop("pending_proposals_full")
        self._fetch(proposal.block.header.parent_id, sender, commit_through=False)

    def _accept_proposal(self, sender: bytes, new_id: bytes, proposal: Proposal) -> None:
        block = proposal.block
        header = block.header
        parent = self.tree.get(header.parent_id)
        assert parent is not None
        if header.timestamp_ms <= parent.header.timestamp_ms:
            self.counters.drop("timestamp_not_increasing")
            return
        if self._in_reconfiguration_suffix(header.parent_id) and (
            block.payload or header.next_epoch is not None
        ):
            self.counters.drop("payload_after_epoch_end")
            return
        if header.next_epoch is not None and not self._valid_epoch_change(header):
            self.counters.drop("bad_epoch_change")
            return
        if not self.setup.checker.check_payload(header, block.payload):
            self.counters.drop("bad_payload")
            return
        if not self.tree.insert(new_id, block):
            self.counters.drop("block_not_inserted")
            return
        if self.node_id not in self.validators:
            return  # an observer follows the chain but never votes
        made = self.safety.make_vote(header, new_id, proposal.timeout_certificate)
        if made is None:
            self.counters.drop("unsafe_to_vote")
            return
        data, signature, state = made
        vote = Vote(data=data, author=self.node_id, signature=signature)
        next_leader = self._leader(header.round + 1)
        if next_leader == self.node_id:
            self._persist_then(state, [], [vote], block)
        else:
            self._persist_then(state, [Send(next_leader, vote)], [], block)

    def _valid_epoch_change(self, header: BlockHeader) -> bool:
        config = header.next_epoch
        assert config is not None
        return config.epoch == self.epoch + 1 and self.setup.checker.check_epoch_change(
            header, config
        )

    def _in_reconfiguration_suffix(self, block_id_: bytes) -> bool:
        """True when `block_id_` or an uncommitted ancestor ends the epoch."""
        current = block_id_
        while current != self.tree.root_id:
            block = self.tree.get(current)
            if block is None:
                return False
            if block.header.next_epoch is not None:
                return True
            current = block.header.parent_id
        return (
            self.tree.root.header.next_epoch is not None
            and self.tree.root.header.epoch == self.epoch
        )

    def _on_vote(self, sender: bytes, vote: Vote) -> None:
        data = vote.data
        if not self._check_epoch(sender, data.epoch):
            return
        index = self.validators.index_of.get(vote.author)
        if data.chain_id != self.chain_id or index is None:
            self.counters.drop("non_member" if index is None else "wrong_chain")
            return
        if not self.round - 1 <= data.round <= self.round + self.params.rounds_ahead_max:
            self.counters.drop("vote_round_out_of_range")
            return
        # Votes are not checked against this replica's view of the next leader: that view may
        # lag by a commit, and a quorum of valid votes is a valid QC whoever aggregates it.
        round_votes = self._votes.setdefault(data.round, {})
        if index in round_votes:
            self.counters.drop(
                "duplicate_vote" if round_votes[index][0] == data.block_id else "equivocating_vote"
            )
            return
        if data.round < self.round and self.tree.high_qc.round >= data.round:
            self.counters.drop("vote_after_qc")
            return
        if not self.validators.verify_one(index, data, vote.signature):
            self.counters.drop("bad_signature")
            return
        block = self.tree.get(data.block_id)
        if block is not None and block.header.height != data.height:
            self.counters.drop("malformed_vote")
            return
        # Votes count together only when they signed the same VoteData: the QC carries one
        # height, and every signature in it must verify against exactly that.
        round_votes[index] = (data.block_id, data.height, vote.signature)
        supporters = [
            i
            for i, (block_id_, height, _) in round_votes.items()
            if block_id_ == data.block_id and height == data.height
        ]
        if not self.validators.has_quorum(supporters) or self.tree.high_qc.round >= data.round:
            return
        qc = QuorumCertificate(
            epoch=data.epoch,
            round=data.round,
            block_id=data.block_id,
            height=data.height,
            signatures=[SignerSignature(i, round_votes[i][2]) for i in sorted(supporters)],
        )
        self._process_qc(qc, sender)

    def _on_timeout(self, sender: bytes, timeout: Timeout) -> None:
        data = timeout.data
        if not self._check_epoch(sender, data.epoch):
            return
        index = self.validators.index_of.get(timeout.author)
        if data.chain_id != self.chain_id or index is None:
            self.counters.drop("non_member" if index is None else "wrong_chain")
            return
        if data.high_qc_round != timeout.high_qc.round:
            self.counters.drop("malformed_timeout")
            return
        if not self._adopt_certificates(sender, timeout):
            return
        if data.epoch != self.epoch:
            return  # the certificate ended the epoch; this timeout belongs to the old one
        if data.round < self.round:
            self.counters.drop("stale_timeout")
            return
        if data.round > self.round + self.params.rounds_ahead_max:
            self.counters.drop("timeout_round_out_of_range")
            return
        if index in self._timeouts.get(data.round, {}):
            self.counters.drop("duplicate_timeout")
            return
        if not self.validators.verify_one(index, data, timeout.signature):
            self.counters.drop("bad_signature")
            return
        round_timeouts = self._timeouts.setdefault(data.round, {})
        round_timeouts[index] = (data.high_qc_round, timeout.signature)
        power = self.validators.power_of(list(round_timeouts))
        if (
            data.round == self.round
            and self.timed_out_round < self.round
            and power >= self.validators.validity_power
        ):
            # f+1 timed out: at least one honest replica gave up on this round; join them.
            self._local_timeout()
        if power >= self.validators.quorum_power:
            tc = TimeoutCertificate(
                epoch=data.epoch,
                round=data.round,
                signatures=[
                    TimeoutSignature(i, hqc_round, signature)
                    for i, (hqc_round, signature) in sorted(round_timeouts.items())
                ],
            )
            self._process_tc(tc)

    def _adopt_certificates(self, sender: bytes, timeout: Timeout) -> bool:
        """Certificates first, whatever the timeout's round: they are self-authenticating, and
        they are how a replica that fell far behind learns where everyone else is."""
        if not self.validators.verify_qc(timeout.high_qc, epoch_root_id=self.epoch_root_id):
            self.counters.drop("bad_certificate")
            return False
        last_tc = timeout.last_timeout_certificate
        if last_tc is not None and not self.validators.verify_tc(last_tc):
            self.counters.drop("bad_certificate")
            return False
        commit_qc = timeout.high_commit_qc
        if commit_qc is not None and commit_qc.epoch == self.epoch:
            if not self.validators.verify_qc(commit_qc, epoch_root_id=self.epoch_root_id):
                self.counters.drop("bad_certificate")
                return False
            self._adopt_commit_qc(commit_qc, sender)
            if self.epoch != timeout.data.epoch:
                return True
        self._process_qc(timeout.high_qc, sender)
        if last_tc is not None and last_tc.epoch == self.epoch:
            self._process_tc(last_tc)
        return True

    def _adopt_commit_qc(self, qc: QuorumCertificate, peer: bytes) -> None:
        """Catch up on a peer's latest commit: fetch the certified block, then commit."""
        if qc.block_id in self.tree:
            self._try_commit(qc)
        elif qc.height > self.tree.root_height + 1:
            self._fetch(qc.block_id, peer, commit_through=False)

    def _local_timeout(self) -> None:
        """Give up on the current round: sign and broadcast a timeout (again, if re-armed)."""
        round_ = self.round
        if self.node_id not in self.validators:
            self._rearm_timer()
            return
        made = self.safety.make_timeout(round_, self.tree.high_qc, self.last_tc)
        if made is None:
            self.counters.drop("unsafe_to_timeout")
            self._rearm_timer()
            return
        data, signature, state = made
        timeout = Timeout(
            data=data,
            author=self.node_id,
            signature=signature,
            high_qc=self.tree.high_qc,
            last_timeout_certificate=self.last_tc,
            high_commit_qc=self.high_commit_qc,
        )
        if self.timed_out_round < round_:
            self.timed_out_round = round_
            self.consecutive_timeouts += 1
        self._persist_then(state, [Broadcast(timeout)], [timeout])
        self._rearm_timer()

    def _rearm_timer(self) -> None:
        delay = self.params.round_timeout_ms
        for _ in range(min(self.consecutive_timeouts, BACKOFF_EXPONENT_MAX)):
            delay = min(
                delay * self.params.timeout_backoff_percent // 100, self.params.round_timeout_ms_max
            )
        self._out.append(SetTimer(self.epoch, self.round, delay))

    # ------------------------------------------------------------------ certificates

    def _process_qc(self, qc: QuorumCertificate, peer: bytes) -> None:
        """Adopt a verified QC: raise the high QC, commit by the two-chain rule, advance."""
        if qc.epoch != self.epoch:
            return
        self.tree.update_high_qc(qc)
        if qc.block_id not in self.tree:
            if qc.height > self.tree.root_height:
                self._fetch(qc.block_id, peer, commit_through=False)
        else:
            self._try_commit(qc)
            if qc.epoch != self.epoch:
                return  # the commit ended the epoch: this QC's rounds mean nothing any more
        if qc.round + 1 > self.round:
            self.last_tc = None
            self.consecutive_timeouts = 0
            self._enter_round(qc.round + 1)
        elif self._leader(self.round) == self.node_id and qc.block_id in self.tree:
            self._request_payload()

    def _process_tc(self, tc: TimeoutCertificate) -> None:
        if tc.epoch != self.epoch or tc.round + 1 <= self.round:
            return
        self.last_tc = tc
        self._enter_round(tc.round + 1)

    def _try_commit(self, qc: QuorumCertificate) -> None:
        target = self.tree.commit_candidate(qc)
        if target is None:
            return
        self._commit(target, qc)

    def _commit(self, target: bytes, proof: QuorumCertificate) -> None:
        """Commit `target` and its ancestors; `proof` is the QC that made it final.

        An epoch ends exactly at its first block carrying `next_epoch`: if the commit reaches
        past such a block, only the blocks up to it are committed. The blocks after it in
        the old epoch carry no payload and are dropped, on every replica alike, so the new
        epoch always starts from the same root.
        """
        path = self.tree.path_from_root(target)
        ending_index = next(
            (i for i, (_, block) in enumerate(path) if block.header.next_epoch is not None),
            None,
        )
        if ending_index is not None:
            path = path[: ending_index + 1]
        last_id = path[-1][0]
        proof_headers = self._proof_headers(last_id, proof)
        certificate = proof_headers[0].justify
        assert certificate.block_id == last_id, "the proof's first header must extend the last"
        previous_root = self.tree.root
        committed = self.tree.commit(last_id)
        assert committed == path
        self._record_committed(previous_root, committed)
        if proof.epoch == self.epoch:
            self.high_commit_qc = proof
        blocks = [block for _, block in committed]
        self._out.append(Commit(blocks=blocks, certificate=certificate, proof=proof))
        if ending_index is None:
            self._resume_pending()
            return
        ending = blocks[-1]
        epoch_proof = None
        if len(proof_headers) <= COMMIT_PROOF_HEADERS_MAX:
            epoch_proof = EpochChangeResponse(
                ending=ending.header, proof=CommitProof(headers=proof_headers, qc=proof)
            )
            self._keep_epoch_proof(epoch_proof)
        self._enter_epoch(ending, epoch_proof)

    def _keep_epoch_proof(self, response: EpochChangeResponse) -> None:
        self._epoch_proofs[response.ending.epoch] = response
        while len(self._epoch_proofs) > EPOCH_PROOFS_MAX:
            self._epoch_proofs.popitem(last=False)

    def _proof_headers(self, committed_id: bytes, proof: QuorumCertificate) -> list[BlockHeader]:
        """Headers from the child of `committed_id` to the block `proof` certifies."""
        pending = self._pending_epoch_change
        if proof.block_id not in self.tree:
            assert pending is not None and pending.proof.qc == proof
            return list(pending.proof.headers)
        headers: list[BlockHeader] = []
        current = proof.block_id
        while current != committed_id:
            block = self.tree.blocks[current]
            headers.append(block.header)
            current = block.header.parent_id
        headers.reverse()
        return headers

    def _record_committed(self, previous_root: Block, committed: list[tuple[bytes, Block]]) -> None:
        previous_round = (
            previous_root.header.round if previous_root.header.epoch == self.epoch else 0
        )
        for committed_id, block in committed:
            header = block.header
            self.leaders.record_commit(
                header.round, header.author, previous_round, self._signer_ids(header.justify)
            )
            previous_round = header.round
            self._recent_committed[committed_id] = block
            if len(self._recent_committed) > RECENT_COMMITTED_MAX:
                self._recent_committed.popitem(last=False)

    def _enter_epoch(self, ending: Block, proof: EpochChangeResponse | None) -> None:
        config = ending.header.next_epoch
        assert config is not None and config.epoch == self.epoch + 1
        ending_id = block_id(self.suite, ending.header)
        self.epoch = config.epoch
        self.validators = self._validator_set(config)
        self.leaders = self._leader_election()
        root_qc = root_qc_for(self.suite, ending, self.epoch)
        self.epoch_root_id = ending_id
        self.tree.reset_root(ending, ending_id, root_qc)
        self._votes.clear()
        self._timeouts.clear()
        self._proposals_seen.clear()
        self._pending_proposals.clear()
        self._fetches.clear()
        self._pending_epoch_change = None
        self.last_tc = None
        self.high_commit_qc = None
        self.consecutive_timeouts = 0
        self.round = 0
        self.proposed_round = 0
        self.timed_out_round = 0
        self._payload_requested_round = 0
        self._out.append(EnterEpoch(config, proof))
        state = self.safety.enter_epoch(self.epoch, root_qc)
        self._persist_then(state, [], [])
        if self.node_id in self.validators:
            self._enter_round(1)

    def _signer_ids(self, qc: QuorumCertificate) -> frozenset[bytes]:
        validators = self.validators.validators
        return frozenset(
            validators[entry.index].node_id
            for entry in qc.signatures
            if entry.index < len(validators)
        )

    # ------------------------------------------------------------------ persistence

    def _persist_then(
        self,
        state: SafetyState,
        outgoing: list[Action],
        loopback: list[ConsensusMessage],
        block: Block | None = None,
    ) -> None:
        self._persist_sequence += 1
        self._out.append(Persist(self._persist_sequence, state, block))
        self._deferred.append(_Deferred(self._persist_sequence, outgoing, loopback))

    def _on_persisted(self, sequence: int) -> None:
        while self._deferred and self._deferred[0].sequence <= sequence:
            deferred = self._deferred.pop(0)
            self._out.extend(deferred.outgoing)
            for message in deferred.loopback:
                self._on_message(self.node_id, message)

    # ------------------------------------------------------------------ block fetching

    def _fetch(self, target_id: bytes, peer: bytes, *, commit_through: bool) -> None:
        existing = self._fetches.get(target_id)
        if existing is not None:
            existing.commit_through = existing.commit_through or commit_through
            return
        if target_id in self.tree or peer == self.node_id:
            return
        if len(self._fetches) >= FETCHES_MAX:
            self.counters.drop("fetches_busy")
            return
        self._fetches[target_id] = _Fetch(
            target_id, peer, [], target_id, commit_through, self.now_ms
        )
        self._out.append(Send(peer, BlockRequest(self.epoch, target_id, BLOCK_REQUEST_COUNT_MAX)))

    def _expire_fetches(self) -> None:
        """A peer that never answers must not block fetching for good: give up after a while."""
        deadline = self.now_ms - self.params.round_timeout_ms
        for fetch in [f for f in self._fetches.values() if f.started_ms < deadline]:
            self._abandon(fetch)
            self.counters.drop("fetch_timed_out")

    def _abandon(self, fetch: _Fetch) -> None:
        del self._fetches[fetch.target_id]
        if fetch.commit_through:
            # Forget the proof too, so the next sign of a later epoch asks again.
            self._pending_epoch_change = None

    def _on_block_request(self, sender: bytes, request: BlockRequest) -> None:
        blocks: list[Block] = []
        current = request.block_id
        payload_bytes = 0
        while len(blocks) < request.count:
            block = self.tree.get(current) or self._recent_committed.get(current)
            if block is None:
                break
            payload_bytes += sum(len(item) for item in block.payload)
            if blocks and payload_bytes > RESPONSE_PAYLOAD_BYTES_MAX:
                break  # the rest in the next request: a response must fit one message
            blocks.append(block)
            if block.header.height == 0:
                break
            current = block.header.parent_id
        if blocks:
            self._out.append(Send(sender, BlockResponse(request.block_id, blocks)))
        else:
            self._out.append(ServeBlocks(sender, request.block_id, request.count))

    def _on_block_response(self, sender: bytes, response: BlockResponse) -> None:
        fetch = next(
            (
                f
                for f in self._fetches.values()
                if f.next_id == response.request_block_id and f.peer == sender
            ),
            None,
        )
        if fetch is None:
            self.counters.drop("unsolicited_blocks")
            return
        accepted: list[tuple[bytes, Block]] = []
        expected = fetch.next_id
        for block in response.blocks:
            if block_id(self.suite, block.header) != expected or not self._valid_body(block):
                # A forged answer is dropped whole; the fetch waits for an honest one or
                # times out. It never cancels the fetch, whoever sent it.
                self.counters.drop("bad_block_response")
                return
            if expected in self.tree:
                break
            accepted.append((expected, block))
            expected = block.header.parent_id
            if expected in self.tree or block.header.height <= self.tree.root_height:
                break
        if not accepted and expected not in self.tree:
            self.counters.drop("empty_block_response")
            return
        fetch.chain.extend(accepted)
        if len(fetch.chain) > self.params.fetched_blocks_max:
            self.counters.drop("fetch_too_long")
            self._abandon(fetch)
            return
        if expected not in self.tree:
            oldest = fetch.chain[-1][1] if fetch.chain else None
            if oldest is not None and oldest.header.height <= self.tree.root_height:
                # Ancestors below our committed root that are not our root: another branch.
                self.counters.drop("fetch_below_root")
                self._abandon(fetch)
                return
            fetch.next_id = expected
            fetch.started_ms = self.now_ms
            self._out.append(
                Send(sender, BlockRequest(self.epoch, expected, BLOCK_REQUEST_COUNT_MAX))
            )
            return
        del self._fetches[fetch.target_id]
        self._connect(fetch)

    def _valid_body(self, block: Block) -> bool:
        """A block's payload is what its header commits to, within the limits."""
        payload = block.payload
        return (
            len(payload) <= self.params.block_payload_items_max
            and sum(len(item) for item in payload) <= self.params.block_bytes_max
            and block.header.payload_root == merkle_root(self.suite, payload)
        )

    def _connect(self, fetch: _Fetch) -> None:
        """Insert a fetched chain (oldest first) and replay the certificates it carries."""
        for new_id, block in reversed(fetch.chain):
            if not self.tree.insert(new_id, block):
                self.counters.drop("block_not_inserted")
                return
            if block.header.epoch == self.epoch:
                self.tree.update_high_qc(block.header.justify)
                self._try_commit(block.header.justify)
                if new_id not in self.tree:
                    return  # a commit pruned this branch away (or ended the epoch)
        if self._finish_epoch_change():
            return
        if self.tree.high_qc.block_id in self.tree:
            self._try_commit(self.tree.high_qc)
        if self.tree.high_qc.epoch == self.epoch and self.tree.high_qc.round + 1 > self.round:
            # The fetched chain carried certificates newer than this replica's round.
            self.last_tc = None
            self.consecutive_timeouts = 0
            self._enter_round(self.tree.high_qc.round + 1)
        self._resume_pending()
        if self._leader(self.round) == self.node_id:
            self._request_payload()

    def _resume_pending(self) -> None:
        ready = [
            (new_id, sender, proposal)
            for new_id, (sender, proposal) in self._pending_proposals.items()
            if proposal.block.header.parent_id in self.tree
        ]
        for new_id, sender, proposal in ready:
            del self._pending_proposals[new_id]
            if (
                proposal.block.header.round == self.round
                and proposal.block.header.epoch == self.epoch
            ):
                self._accept_proposal(sender, new_id, proposal)

    # ------------------------------------------------------------------ epochs

    def _on_epoch_request(self, sender: bytes, request: EpochChangeRequest) -> None:
        response = self._epoch_proofs.get(request.epoch)
        if response is None:
            self.counters.drop("epoch_proof_unknown")
            return
        self._out.append(Send(sender, response))

    def _on_epoch_response(self, sender: bytes, response: EpochChangeResponse) -> None:
        ending = response.ending
        ending_id = block_id(self.suite, ending)
        valid = (
            ending.epoch == self.epoch
            and ending.next_epoch is not None
            and ending.next_epoch.epoch == self.epoch + 1
            and self._valid_commit_proof(ending, ending_id, response.proof)
        )
        if not valid:
            self.counters.drop(
                "stale_epoch_proof" if ending.epoch < self.epoch else "bad_epoch_proof"
            )
            return
        self._pending_epoch_change = response
        if not self._finish_epoch_change():
            self._fetch(ending_id, sender, commit_through=True)

    def _finish_epoch_change(self) -> bool:
        """Commit the pending epoch's ending block once it is in the tree; True if done."""
        pending = self._pending_epoch_change
        if pending is None:
            return False
        ending_id = block_id(self.suite, pending.ending)
        if ending_id not in self.tree or ending_id == self.tree.root_id:
            return False
        self._commit(ending_id, pending.proof.qc)
        return True

    def _valid_commit_proof(
        self, ending: BlockHeader, ending_id: bytes, proof: CommitProof
    ) -> bool:
        previous, previous_id = ending, ending_id
        for header in proof.headers:
            if header.parent_id != previous_id or header.epoch != ending.epoch:
                return False
            if header.height != previous.height + 1 or header.round <= previous.round:
                return False
            previous, previous_id = header, block_id(self.suite, header)
        before_last = proof.headers[-2] if len(proof.headers) > 1 else ending
        return (
            proof.headers[-1].round == before_last.round + 1
            and proof.qc.block_id == previous_id
            and self.validators.verify_qc(proof.qc, epoch_root_id=self.epoch_root_id)
        )

    # ------------------------------------------------------------------ introspection

    def halt(self, reason: str) -> None:
        self.halted = reason
        self._out.append(Halt(reason))

    def signing_bytes_of(self, payload: VoteData) -> bytes:
        return signing_bytes(payload)
