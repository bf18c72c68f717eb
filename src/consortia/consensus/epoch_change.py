"""Epoch change: the proofs that an epoch ended, kept, checked, asked for and handed out.

An epoch ends at its first committed block carrying `next_epoch`. A replica that committed it
keeps an `EpochChangeResponse` (the ending header and a `CommitProof`: the headers up to the
QC that made it final) and sends it to peers still in the old epoch; a replica that sees a
later epoch asks for one, checks it against the validators it knows, and then fetches the
ending block and commits it.

Owns the kept proofs (those the driver kept across a restart first), the rate limits on
asking and helping, and the proof being acted on, until its ending block can be committed.
Never changes rounds or commits itself: `replica.py` commits the ending block and enters the
new epoch. Pure: no clock, no I/O; everything bounded.
"""

from __future__ import annotations

from collections import OrderedDict

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.config import Params
from consortia.consensus.events import Action, Counters, Send
from consortia.consensus.validators import ValidatorSet
from consortia.crypto import Suite
from consortia.types.consensus import (
    COMMIT_PROOF_HEADERS_MAX,
    Block,
    BlockHeader,
    CommitProof,
    EpochChangeRequest,
    EpochChangeResponse,
    QuorumCertificate,
)
from consortia.types.signing import block_id

# Epoch-change proofs kept to help lagging replicas across epochs.
EPOCH_PROOFS_MAX = 64
# Peers remembered when rate-limiting the epoch proofs sent to replicas left behind.
EPOCH_HELP_PEERS_MAX = 1024
_NEVER = -(10**12)


class EpochChange:
    def __init__(
        self,
        suite: Suite,
        params: Params,
        counters: Counters,
        out: list[Action],
        kept: list[EpochChangeResponse],
    ) -> None:
        self._suite = suite
        self._params = params
        self._counters = counters
        self._out = out
        # ending epoch -> proof that it ended. Invariant: at most EPOCH_PROOFS_MAX, oldest
        # evicted first; every entry was committed by this replica or verified before use.
        self.proofs: OrderedDict[int, EpochChangeResponse] = OrderedDict()
        # peer -> when it was last sent a proof. Invariant: at most EPOCH_HELP_PEERS_MAX.
        self._help_sent_ms: OrderedDict[bytes, int] = OrderedDict()
        # When this replica last asked a peer for a proof (at most once a round timeout).
        self._requested_ms = _NEVER
        # A verified proof whose ending block is being fetched. Invariant: its ending block
        # belongs to the replica's current epoch.
        self.pending: EpochChangeResponse | None = None
        for response in kept:  # the proofs the driver kept across a restart
            self.keep(response)

    def keep(self, response: EpochChangeResponse) -> None:
        self.proofs[response.ending.epoch] = response
        while len(self.proofs) > EPOCH_PROOFS_MAX:
            self.proofs.popitem(last=False)

    def same_epoch(self, sender: bytes, epoch: int, current: int, now_ms: int) -> bool:
        """True for the current epoch; asks for a proof when the sender is ahead, and sends
        one when the sender is behind, so replicas left in an ended epoch catch up."""
        if epoch == current:
            return True
        timeout_ms = self._params.round_timeout_ms
        if epoch < current and epoch in self.proofs:
            last_sent = self._help_sent_ms.get(sender, _NEVER)
            if now_ms - last_sent >= timeout_ms:
                self._help_sent_ms[sender] = now_ms
                if len(self._help_sent_ms) > EPOCH_HELP_PEERS_MAX:
                    self._help_sent_ms.popitem(last=False)
                self._out.append(Send(sender, self.proofs[epoch]))
        if epoch > current and self.pending is None and now_ms - self._requested_ms >= timeout_ms:
            self._requested_ms = now_ms
            self._out.append(Send(sender, EpochChangeRequest(epoch=current)))
        self._counters.drop("other_epoch")
        return False

    def on_request(self, sender: bytes, request: EpochChangeRequest) -> None:
        response = self.proofs.get(request.epoch)
        if response is None:
            self._counters.drop("epoch_proof_unknown")
            return
        self._out.append(Send(sender, response))

    def accept(
        self,
        response: EpochChangeResponse,
        epoch: int,
        validators: ValidatorSet,
        epoch_root_id: bytes,
    ) -> bool:
        """Check a peer's proof that `epoch` ended; remember it as pending when valid."""
        ending = response.ending
        valid = (
            ending.epoch == epoch
            and ending.next_epoch is not None
            and ending.next_epoch.epoch == epoch + 1
            and self._valid_commit_proof(
                ending, block_id(self._suite, ending), response.proof, validators, epoch_root_id
            )
        )
        if not valid:
            self._counters.drop("stale_epoch_proof" if ending.epoch < epoch else "bad_epoch_proof")
            return False
        self.pending = response
        return True

    def ending_to_commit(self, tree: BlockTree) -> tuple[bytes, QuorumCertificate] | None:
        """The pending proof's ending block and the QC that made it final, once that block
        is in the tree and not yet committed; None otherwise."""
        pending = self.pending
        if pending is None:
            return None
        ending_id = block_id(self._suite, pending.ending)
        if ending_id not in tree or ending_id == tree.root_id:
            return None
        return ending_id, pending.proof.qc

    def _valid_commit_proof(
        self,
        ending: BlockHeader,
        ending_id: bytes,
        proof: CommitProof,
        validators: ValidatorSet,
        epoch_root_id: bytes,
    ) -> bool:
        previous, previous_id = ending, ending_id
        for header in proof.headers:
            if header.parent_id != previous_id or header.epoch != ending.epoch:
                return False
            if header.height != previous.height + 1 or header.round <= previous.round:
                return False
            previous, previous_id = header, block_id(self._suite, header)
        before_last = proof.headers[-2] if len(proof.headers) > 1 else ending
        return (
            proof.headers[-1].round == before_last.round + 1
            and proof.qc.block_id == previous_id
            and validators.verify_qc(proof.qc, epoch_root_id=epoch_root_id)
        )

    def proof_headers(
        self, tree: BlockTree, committed_id: bytes, proof: QuorumCertificate
    ) -> list[BlockHeader]:
        """Headers from the child of `committed_id` to the block `proof` certifies: from the
        tree, or from the pending proof when the certified block was never fetched."""
        if proof.block_id not in tree:
            pending = self.pending
            assert pending is not None and pending.proof.qc == proof
            return list(pending.proof.headers)
        headers: list[BlockHeader] = []
        current = proof.block_id
        while current != committed_id:
            block = tree.blocks[current]
            headers.append(block.header)
            current = block.header.parent_id
        headers.reverse()
        return headers

    def ended(
        self, ending: Block, headers: list[BlockHeader], proof: QuorumCertificate
    ) -> EpochChangeResponse | None:
        """This replica committed `ending`: keep the proof of it for peers, when it fits."""
        if len(headers) > COMMIT_PROOF_HEADERS_MAX:
            return None
        response = EpochChangeResponse(
            ending=ending.header, proof=CommitProof(headers=headers, qc=proof)
        )
        self.keep(response)
        return response

    def check(self) -> str | None:
        """The first broken invariant, or None."""
        if len(self.proofs) > EPOCH_PROOFS_MAX or len(self._help_sent_ms) > EPOCH_HELP_PEERS_MAX:
            return "epoch-change buffers above their bounds"
        return None
