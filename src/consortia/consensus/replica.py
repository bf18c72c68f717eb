"""One validator's consensus state machine: `Replica.handle(event) -> list[Action]`.

The router, and the single owner of round state (epoch, round, last TC, what was proposed).
Every input goes through the two transition tables below; the seams sit beside it and never
move the round: `pacemaker.py` (timers, back-off, the local timeout, and the list of every
way a round starts), `votes.py` (votes and timeouts into QCs and TCs; this replica's vote),
`proposals.py` (a proposal's checks; the leader's block), `block_sync.py`, `epoch_change.py`,
`commits.py`, `durable.py`, `restore.py` (where a start or restart resumes), `invariants.py`,
`safety.py` (the only code that decides a signature), `leader.py` and `block_tree.py`.
docs/consensus.md maps each file to the protocol and gives its safety argument.

Every signature goes through `SafetyRules`; the signed message is held until the driver
acknowledges that the new safety state is durable (`Persist` then `PersistDone`). The
replica drops and counts what it cannot use (`events.DropReason`); nothing a peer sends can
make it raise. Its invariants are stated on its fields and checked after every event; a
broken one halts it (`Halt`, then silence), because carrying on would risk the ledger.
Must never sign anything itself, nor read a clock, the disk, the network or randomness.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.consensus import events as ev
from consortia.consensus import restore
from consortia.consensus.block_sync import BlockSync, Fetch
from consortia.consensus.commits import CommitLog
from consortia.consensus.config import Params, ReplicaSetup
from consortia.consensus.durable import DurableGate
from consortia.consensus.epoch_change import EpochChange
from consortia.consensus.invariants import (
    InvariantBrokenError,
    before_event,
    check_invariants,
    check_transition_tables,
)
from consortia.consensus.pacemaker import Pacemaker
from consortia.consensus.proposals import Proposals
from consortia.consensus.safety import Refusal
from consortia.consensus.votes import VoteCollector
from consortia.types import consensus as msg
from consortia.types.execution import ExecutionHeader
from consortia.types.signing import SigningDomain, block_id

# Transitions: every input the replica takes and the one method that handles it.
ON_EVENT: Final = {
    ev.Start: "_start",
    ev.MessageReceived: "_on_message",
    ev.TimerFired: "_on_timer",
    ev.PayloadReady: "_on_payload",
    ev.PersistDone: "_on_persisted",
}
ON_MESSAGE: Final = {
    msg.Proposal: "_on_proposal",
    msg.Vote: "_on_vote",
    msg.Timeout: "_on_timeout",
    msg.BlockRequest: "_on_block_request",
    msg.BlockResponse: "_on_block_response",
    msg.EpochChangeRequest: "_on_epoch_request",
    msg.EpochChangeResponse: "_on_epoch_response",
}


class Replica:
    def __init__(self, setup: ReplicaSetup) -> None:
        # Fixed at construction (`setup` is read again only for each epoch's validator set).
        self.setup = setup
        self.node_id = setup.node_id
        self.chain_id = setup.chain_id
        self.domain = SigningDomain(setup.genesis_hash)
        self.suite = setup.suite
        self.params: Params = setup.params
        self.counters = ev.Counters()  # only rise; keyed by closed sets (DropReason, RefusalRule)
        self.now_ms = 0  # the latest time an event carried; never decreases
        self.halted: str | None = None  # why the replica stopped; then it answers nothing
        self.started = False  # `Start` was handled: from then on round >= 1 (see below)
        # Actions of the event being handled; shared with the seams, emptied by `handle`.
        self._out: list[ev.Action] = []

        # Where it left off (`restore.py`). All of this epoch; set anew only by `_enter_epoch`.
        self.epoch = setup.epoch_config.epoch  # never decreases
        self.validators = restore.validator_set(setup, setup.epoch_config, self.domain)
        self.epoch_root_id = setup.epoch_root_id  # the block this epoch started from
        # The only signer, for the replica's life; its state's epoch moves with `epoch`.
        self.safety = restore.safety_rules(setup, self.epoch, self.domain)
        self.tree = restore.block_tree(setup, self.safety.state, self.epoch)  # root: reset_root
        self.leaders = restore.kept_leaders(setup, self.validators, self.epoch)

        # Round state. Invariants: (epoch, round) never decreases; round >= 1 once started
        # (an observer entering an epoch waits at 0 for its first certificate); last_tc is
        # None or a TC of this epoch for round - 1; proposed_round and payload_requested_round
        # are at most round.
        self.round = 0
        self.last_tc: msg.TimeoutCertificate | None = None
        self.proposed_round = 0
        self.payload_requested_round = 0
        # The QC that made this replica's latest commit of this epoch final (None: none yet).
        # Invariant: None or of this epoch.
        self.high_commit_qc = restore.kept_commit_qc(setup, self.epoch)
        # The seams: each built once, for the replica's life, and reset for a new epoch by
        # `_enter_epoch`; each states its own invariants and checks them (`check`).
        self.pacemaker = Pacemaker(self.params, self.node_id, self.counters)
        self.votes = VoteCollector(self.validators, self.chain_id, self.counters)
        self.proposals = Proposals(setup, self.counters, self.leaders)
        self.sync = BlockSync(
            self.suite, self.params, self.node_id, self.tree, counters=self.counters, out=self._out
        )
        self.epochs = EpochChange(
            self.suite, self.params, self.counters, self._out, setup.epoch_proofs
        )
        self.durable = DurableGate()
        self.chain = CommitLog()

    # ------------------------------------------------------------------ entry point

    def handle(self, event: ev.Event) -> list[ev.Action]:
        """Process one event; return the actions for the driver, in order."""
        if self.halted is not None:
            return []
        before = before_event(self)
        self._out.clear()
        try:
            self.now_ms = max(self.now_ms, event.now_ms)
            if self.sync.expire(self.now_ms):
                self.epochs.pending = None
            getattr(self, ON_EVENT[type(event)])(event)
            check_invariants(self, before)
        except InvariantBrokenError as broken:
            self._out.clear()
            self.halted = str(broken)
            return [ev.Halt(self.halted)]
        out = self._out.copy()
        self._out.clear()
        return out

    def sign_execution(self, header: ExecutionHeader) -> bytes | Refusal:
        """The node's handle on the safety rules for execution headers (no round state
        changes): the signature, or the refusal (counted by rule)."""
        signed = self.safety.sign_execution(header)
        if isinstance(signed, Refusal):
            self.counters.refuse(signed.rule)
        return signed

    # ------------------------------------------------------------------ lifecycle

    def _start(self, event: ev.Start) -> None:
        start_round, tc = restore.start_round(self.tree.high_qc, self.safety.state, self.epoch)
        if tc is not None:
            # Restarted after timing out or voting in a round entered through this TC: resume
            # there, with the QC the TC carries.
            self.last_tc = tc
            self.tree.update_high_qc(tc.high_qc)
        self.round = 0
        self.started = True
        self._enter_round(start_round)

    def _on_timer(self, event: ev.TimerFired) -> None:
        if event.epoch == self.epoch and event.round == self.round:
            self._local_timeout()

    # ------------------------------------------------------------------ rounds

    def _enter_round(self, new_round: int, *, leader_overdue: bool = False) -> None:
        """Move to `new_round` (never back): forget old rounds, arm the timer, and propose
        when leading. pacemaker.py lists every way this is reached."""
        if new_round <= self.round:
            return
        self.round = new_round
        self.votes.prune(new_round - 1)
        self.proposals.prune(new_round - 1)
        self.pacemaker.entered(new_round, self.now_ms)
        self._out.append(self.pacemaker.timer(self.epoch, new_round, overdue=leader_overdue))
        self._request_payload()

    def _advance_by_qc(self, qc_round: int) -> None:
        """A QC of `qc_round` made progress: the one place the back-off resets in an epoch
        (`Pacemaker.certified`, which also says whether the next leader is overdue)."""
        overdue = self.pacemaker.certified(qc_round, self.round, self.now_ms)
        self.last_tc = None
        self._enter_round(qc_round + 1, leader_overdue=overdue)

    def _request_payload(self) -> None:
        """When leading the current round, ask the node once for the payload to propose."""
        if self.leaders.leader(self.round) != self.node_id:
            return
        if self.proposed_round >= self.round or self.payload_requested_round >= self.round:
            return
        request = self.proposals.request(self.tree, self.epoch, self.round)
        if request is not None:
            self.payload_requested_round = self.round
            self._out.append(request)

    def _on_payload(self, event: ev.PayloadReady) -> None:
        if event.epoch != self.epoch or event.round != self.round:
            return
        if self.proposed_round >= self.round or self.leaders.leader(self.round) != self.node_id:
            return
        made = self.proposals.propose(self.safety, self.tree, event, self.now_ms, self.last_tc)
        if made is None:
            return
        proposal, state = made
        self.proposed_round = self.round
        # Like a vote: the proposal leaves (and reaches this replica) once the state that
        # records it is durable, so a restarted leader never signs another for this round.
        self._persist_then(state, [ev.Broadcast(proposal)], [proposal])

    # ------------------------------------------------------------------ messages

    def _on_message(self, event: ev.MessageReceived) -> None:
        self._receive(event.sender, event.message)

    def _receive(self, sender: bytes, message: msg.ConsensusMessage) -> None:
        handler: Any = getattr(self, ON_MESSAGE[type(message)])
        handler(message, sender)

    def _same_epoch(self, sender: bytes, epoch: int) -> bool:
        return self.epochs.same_epoch(sender, epoch, self.epoch, self.now_ms)

    def _on_proposal(self, proposal: msg.Proposal, sender: bytes) -> None:
        header = proposal.block.header
        if not self._same_epoch(sender, header.epoch):
            return
        new_id = block_id(self.suite, header)
        # Certificates are self-authenticating: learn from them even when this replica
        # disagrees about the leader (its committed history may lag), so it catches up.
        if not self.proposals.certificates_valid(proposal, self.validators, self.epoch_root_id):
            return
        self._process_qc(header.justify, sender)
        if header.epoch != self.epoch:
            return  # its certificate ended the epoch
        if proposal.timeout_certificate is not None:
            self._process_tc(proposal.timeout_certificate, sender)
        if not self.proposals.valid(proposal, new_id, self.validators, self.now_ms, self.round):
            return
        if header.parent_id not in self.tree:
            self.proposals.buffer(sender, new_id, proposal)
            self._fetch(header.parent_id, sender)
            return
        self._accept_proposal(sender, new_id, proposal)

    def _accept_proposal(self, sender: bytes, new_id: bytes, proposal: msg.Proposal) -> None:
        block = proposal.block
        header = block.header
        if not self.proposals.admissible(proposal, self.tree, self.epoch):
            return
        if not self.tree.insert(new_id, block):
            self.counters.drop("block_not_inserted")
            return
        if self.node_id not in self.validators:
            return  # an observer follows the chain but never votes
        tc = proposal.timeout_certificate
        signed = self.votes.sign_vote(self.safety, self.node_id, header, new_id, tc)
        if signed is None:
            return
        vote, state = signed
        next_leader = self.leaders.leader(header.round + 1)
        if next_leader == self.node_id:
            self._persist_then(state, [], [vote], block)
        else:
            self._persist_then(state, [ev.Send(next_leader, vote)], [], block)

    def _on_vote(self, vote: msg.Vote, sender: bytes) -> None:
        if not self._same_epoch(sender, vote.data.epoch):
            return
        qc = self.votes.add_vote(vote, self.round, self.tree, self.params.rounds_ahead_max)
        if qc is not None:
            self._process_qc(qc, sender)

    def _on_timeout(self, timeout: msg.Timeout, sender: bytes) -> None:
        data = timeout.data
        if not self._same_epoch(sender, data.epoch):
            return
        index = self.votes.timeout_author(timeout, self.epoch_root_id)
        if index is None:
            return
        self._adopt_certificates(sender, timeout)
        if data.epoch != self.epoch:
            return  # the certificate ended the epoch; this timeout belongs to the old one
        added = self.votes.add_timeout(timeout, index, self.round, self.params.rounds_ahead_max)
        if added is None:
            return
        power, tc = added
        if self.pacemaker.joins(data.round, self.round, power, self.validators.validity_power):
            self._local_timeout()  # f+1 timed out: at least one honest replica gave up
        if tc is not None:
            self._process_tc(tc, sender)

    def _adopt_certificates(self, sender: bytes, timeout: msg.Timeout) -> None:
        """Certificates first, whatever the timeout's round: they are self-authenticating, and
        they are how a replica that fell far behind learns where everyone else is."""
        commit_qc = timeout.high_commit_qc
        if commit_qc is not None and commit_qc.epoch == self.epoch:
            # Catch up on the peer's latest commit: fetch the certified block, then commit.
            if commit_qc.block_id in self.tree:
                self._try_commit(commit_qc)
            elif commit_qc.height > self.tree.root_height + 1:
                self._fetch(commit_qc.block_id, sender)
            if self.epoch != timeout.data.epoch:
                return
        self._process_qc(timeout.high_qc, sender)
        last_tc = timeout.last_timeout_certificate
        if last_tc is not None and last_tc.epoch == self.epoch:
            self._process_tc(last_tc, sender)

    def _local_timeout(self) -> None:
        """Give up on the current round (again, if re-armed): sign and broadcast a timeout,
        with the vote signed in the round if any (`Pacemaker.sign_timeout`); re-arm the timer."""
        if self.node_id in self.validators:
            signed = self.pacemaker.sign_timeout(
                self.safety,
                self.epoch,
                self.round,
                self.tree.high_qc,
                last_tc=self.last_tc,
                high_commit_qc=self.high_commit_qc,
            )
            if signed is not None:
                messages, state = signed
                self._persist_then(state, [ev.Broadcast(m) for m in messages], [*messages])
        self._out.append(self.pacemaker.timer(self.epoch, self.round))

    # ------------------------------------------------------------------ certificates

    def _process_qc(self, qc: msg.QuorumCertificate, peer: bytes) -> None:
        """Adopt a verified QC: raise the high QC, commit by the two-chain rule, advance."""
        if qc.epoch != self.epoch:
            return
        self.tree.update_high_qc(qc)
        if qc.block_id not in self.tree:
            if qc.height > self.tree.root_height:
                self._fetch(qc.block_id, peer)
        else:
            self._try_commit(qc)
            if qc.epoch != self.epoch:
                return  # the commit ended the epoch: this QC's rounds mean nothing any more
        if qc.round + 1 > self.round:
            self._advance_by_qc(qc.round)
        elif qc.block_id in self.tree:
            self._request_payload()

    def _process_tc(self, tc: msg.TimeoutCertificate, peer: bytes) -> None:
        """Adopt a verified TC: first the QC it carries, then round tc.round + 1."""
        self._process_qc(tc.high_qc, peer)
        if tc.epoch != self.epoch or tc.round + 1 <= self.round:
            return
        self.last_tc = tc
        self._enter_round(tc.round + 1)

    def _try_commit(self, qc: msg.QuorumCertificate) -> None:
        target = self.tree.commit_candidate(qc)
        if target is not None:
            self._commit(target, qc)

    def _commit(self, target: bytes, proof: msg.QuorumCertificate) -> None:
        """Commit `target` and its ancestors (`commits.py`); enter the next epoch when the
        commit reached the block that ends this one."""
        commit, ending_headers = self.chain.commit(
            self.tree, self.leaders, self.epochs, target, proof
        )
        if proof.epoch == self.epoch:
            self.high_commit_qc = proof
        self._out.append(commit)
        if ending_headers is None:
            self._resume_pending()
            return
        ending = commit.blocks[-1]
        self._enter_epoch(ending, self.epochs.ended(ending, ending_headers, proof))

    def _enter_epoch(self, ending: msg.Block, proof: msg.EpochChangeResponse | None) -> None:
        """Hand over to the epoch `ending` names (`restore.next_epoch`): the tree from
        `ending`, the seams and the round state reset, a fresh safety state persisted."""
        config = ending.header.next_epoch
        assert config is not None and config.epoch == self.epoch + 1
        self.epoch = config.epoch
        self.validators, self.leaders, root_qc = restore.next_epoch(self.setup, ending, self.domain)
        self.epoch_root_id = root_qc.block_id  # the ending block's id
        self.tree.reset_root(ending, self.epoch_root_id, root_qc)
        self.votes.new_epoch(self.validators)
        self.proposals.new_epoch(self.leaders)
        self.sync.clear()
        self.epochs.pending = None
        self.last_tc = self.high_commit_qc = None
        self.pacemaker.new_epoch()
        self.round = self.proposed_round = self.payload_requested_round = 0
        self._out.append(ev.EnterEpoch(config, proof))
        # A restart between this epoch's first durable state and the record of `ending` kept
        # that state (restore.safety_rules): kept as is, it may hold this epoch's signatures.
        state = self.safety.state
        if state.epoch < self.epoch:
            state = self.safety.enter_epoch(self.epoch, root_qc)
        self._persist_then(state, [], [])
        if self.node_id in self.validators:
            self._enter_round(1)

    # ------------------------------------------------------------------ persistence

    def _persist_then(
        self,
        state: msg.SafetyState,
        outgoing: list[ev.Action],
        loopback: list[msg.ConsensusMessage],
        block: msg.Block | None = None,
    ) -> None:
        self._out.append(self.durable.persist(state, outgoing, loopback, block))

    def _on_persisted(self, event: ev.PersistDone) -> None:
        for held in self.durable.release(event.sequence):
            self._out.extend(held.outgoing)
            for message in held.loopback:
                self._receive(self.node_id, message)

    # ------------------------------------------------------------------ block sync

    def _fetch(self, target_id: bytes, peer: bytes, *, commit_through: bool = False) -> None:
        self.sync.fetch(
            target_id, peer, epoch=self.epoch, now_ms=self.now_ms, commit_through=commit_through
        )

    def _on_block_request(self, request: msg.BlockRequest, sender: bytes) -> None:
        self.sync.on_request(request, sender, self.chain.get)

    def _on_block_response(self, response: msg.BlockResponse, sender: bytes) -> None:
        connected, forget_epoch_proof = self.sync.on_response(
            sender, response, epoch=self.epoch, now_ms=self.now_ms
        )
        if forget_epoch_proof:
            self.epochs.pending = None
        if connected is not None:
            self._connect(connected)

    def _connect(self, fetch: Fetch) -> None:
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
        high_qc = self.tree.high_qc
        if high_qc.block_id in self.tree:
            self._try_commit(high_qc)
        high_qc = self.tree.high_qc
        if high_qc.epoch == self.epoch and high_qc.round + 1 > self.round:
            # The fetched chain carried certificates newer than this replica's round.
            self._advance_by_qc(high_qc.round)
        self._resume_pending()
        self._request_payload()

    def _resume_pending(self) -> None:
        ready = self.proposals.take_ready(self.tree, self.epoch, self.round)
        for new_id, sender, proposal in ready:
            self._accept_proposal(sender, new_id, proposal)

    # ------------------------------------------------------------------ epochs

    def _on_epoch_request(self, request: msg.EpochChangeRequest, sender: bytes) -> None:
        self.epochs.on_request(sender, request)

    def _on_epoch_response(self, response: msg.EpochChangeResponse, sender: bytes) -> None:
        if not self.epochs.accept(response, self.epoch, self.validators, self.epoch_root_id):
            return
        if not self._finish_epoch_change():
            self._fetch(block_id(self.suite, response.ending), sender, commit_through=True)

    def _finish_epoch_change(self) -> bool:
        """Commit the pending epoch's ending block once it is in the tree; True if done."""
        ready = self.epochs.ending_to_commit(self.tree)
        if ready is not None:
            self._commit(*ready)
        return ready is not None


check_transition_tables(Replica, ON_EVENT, ON_MESSAGE)
