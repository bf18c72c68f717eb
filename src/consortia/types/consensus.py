"""Canonical consensus structs: blocks, votes, quorum and timeout certificates, epochs.

The protocol (docs/consensus.md) is a Jolteon-style two-chain HotStuff. These are its
messages and certificates as values; what they mean and when they are valid lives in
`consortia.consensus`. Every struct that is signed is tagged and carries the chain id, so a
signature made for one purpose or one chain is never valid for another (domain separation).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from consortia.types.primitives import (
    PAYLOAD_ITEMS_MAX,
    REPUTATION_WINDOW_MAX,
    U64,
    VALIDATORS_MAX,
    ChainId,
    Epoch,
    Hash,
    Height,
    NodeId,
    PayloadItem,
    PublicKey,
    Round,
    Signature,
    ValidatorIndex,
)

ZERO_HASH: Final = bytes(32)
BLOCK_REQUEST_COUNT_MAX: Final = 64
COMMIT_PROOF_HEADERS_MAX: Final = 64


class _Canonical(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Base of every canonical struct: immutable, encoded as an array, nothing extra."""


class Validator(_Canonical, frozen=True, tag="validator"):
    node_id: NodeId
    public_key: PublicKey
    voting_power: Annotated[int, Meta(ge=1, le=2**32)]


class EpochConfig(_Canonical, frozen=True, tag="epoch_config"):
    """The validator set of one epoch. A quorum is more than 2/3 of the total voting power."""

    epoch: Epoch
    validators: Annotated[list[Validator], Meta(min_length=1, max_length=VALIDATORS_MAX)]

    def __post_init__(self) -> None:
        node_ids = [validator.node_id for validator in self.validators]
        if node_ids != sorted(node_ids) or len(set(node_ids)) != len(node_ids):
            raise ValueError("validators must be sorted by node id, without duplicates")

    @property
    def total_power(self) -> int:
        return sum(validator.voting_power for validator in self.validators)

    @property
    def quorum_power(self) -> int:
        """The least power that is more than two thirds of the total."""
        return self.total_power * 2 // 3 + 1

    @property
    def fault_power(self) -> int:
        """The most Byzantine power tolerated: f with total = 3f + 1 (or more)."""
        return (self.total_power - 1) // 3


class VoteData(_Canonical, frozen=True, tag="vote"):
    """What a validator signs to vote for a block."""

    chain_id: ChainId
    epoch: Epoch
    round: Round
    block_id: Hash
    height: Height


class SignerSignature(_Canonical, frozen=True, tag="signer"):
    index: ValidatorIndex
    signature: Signature


def _check_signers_sorted(signatures: list[SignerSignature]) -> None:
    indexes = [entry.index for entry in signatures]
    if any(a >= b for a, b in pairwise(indexes)):
        raise ValueError("signatures must be sorted by strictly increasing validator index")


class QuorumCertificate(_Canonical, frozen=True, tag="qc"):
    """Votes from more than 2/3 of the voting power for one block in one round."""

    epoch: Epoch
    round: Round
    block_id: Hash
    height: Height
    signatures: Annotated[list[SignerSignature], Meta(max_length=VALIDATORS_MAX)]

    def __post_init__(self) -> None:
        _check_signers_sorted(self.signatures)

    def vote_data(self, chain_id: str) -> VoteData:
        return VoteData(chain_id, self.epoch, self.round, self.block_id, self.height)


class TimeoutData(_Canonical, frozen=True, tag="timeout"):
    """What a validator signs when it gives up on a round: the round and its highest QC."""

    chain_id: ChainId
    epoch: Epoch
    round: Round
    high_qc_round: Round


class TimeoutSignature(_Canonical, frozen=True, tag="timeout_signer"):
    index: ValidatorIndex
    high_qc_round: Round
    signature: Signature


class TimeoutCertificate(_Canonical, frozen=True, tag="tc"):
    """Timeouts from more than 2/3 of the voting power for one round, and the highest QC
    among the signers' timeouts.

    `high_qc` is what makes the certificate honest: each entry names its signer's high QC
    round, and the highest of them must be the round of a real QC carried here, so no signer
    can claim a QC that does not exist (a forged claim would make every honest voter refuse
    the next leader's block). Whoever adopts the TC adopts its QC.
    """

    epoch: Epoch
    round: Round
    signatures: Annotated[list[TimeoutSignature], Meta(min_length=1, max_length=VALIDATORS_MAX)]
    high_qc: QuorumCertificate

    def __post_init__(self) -> None:
        indexes = [entry.index for entry in self.signatures]
        if any(a >= b for a, b in pairwise(indexes)):
            raise ValueError("signatures must be sorted by strictly increasing validator index")
        if self.high_qc.round != self.highest_qc_round or self.high_qc.epoch != self.epoch:
            raise ValueError("a TC's high QC must be of its epoch and its highest signed round")

    @property
    def highest_qc_round(self) -> int:
        return max(entry.high_qc_round for entry in self.signatures)


class BlockHeader(_Canonical, frozen=True, tag="block_header"):
    """A block's header; the block id is the hash of its canonical encoding.

    `justify` certifies the parent; `payload_root` commits to the payload items; `timestamp_ms`
    is the proposer's clock, checked by replicas to be after the parent's, and is the only time
    the execution layer ever sees. `ends_epoch` announces that this block, once committed,
    hands over to `next_epoch`.
    """

    chain_id: ChainId
    protocol_version: Annotated[int, Meta(ge=1, le=2**16)]
    epoch: Epoch
    round: Round
    height: Height
    parent_id: Hash
    justify: QuorumCertificate
    author: NodeId
    timestamp_ms: U64
    payload_root: Hash
    payload_count: Annotated[int, Meta(ge=0, le=PAYLOAD_ITEMS_MAX)]
    next_epoch: EpochConfig | None = None


class Block(_Canonical, frozen=True, tag="block"):
    """A header and its payload: opaque items the consensus orders but never interprets."""

    header: BlockHeader
    payload: Annotated[list[PayloadItem], Meta(max_length=PAYLOAD_ITEMS_MAX)]

    def __post_init__(self) -> None:
        if len(self.payload) != self.header.payload_count:
            raise ValueError("payload length differs from the header's payload_count")


class ProposalData(_Canonical, frozen=True, tag="proposal"):
    """What a leader signs when it proposes: the block id in its round."""

    chain_id: ChainId
    epoch: Epoch
    round: Round
    block_id: Hash


# Network messages. Each is one of the union `ConsensusMessage` below.


class Proposal(_Canonical, frozen=True, tag="msg_proposal"):
    block: Block
    signature: Signature
    # Present when the leader entered this round through a timeout certificate rather than a
    # QC of the previous round: it justifies not extending the previous round's block.
    timeout_certificate: TimeoutCertificate | None = None


class Vote(_Canonical, frozen=True, tag="msg_vote"):
    data: VoteData
    author: NodeId
    signature: Signature


class Timeout(_Canonical, frozen=True, tag="msg_timeout"):
    data: TimeoutData
    author: NodeId
    signature: Signature
    high_qc: QuorumCertificate
    # The certificate that ended the previous round, so lagging replicas can catch up.
    last_timeout_certificate: TimeoutCertificate | None = None
    # The QC that made the sender's latest commit final (the two-chain rule's second link).
    # Replicas whose committed chains differ compute different leaders; in a stall, these
    # let every replica reach the same commits, hence the same leaders.
    high_commit_qc: QuorumCertificate | None = None


class BlockRequest(_Canonical, frozen=True, tag="msg_block_request"):
    """Ask a peer for the block `block_id` and up to `count - 1` of its ancestors.

    Answers are trusted by hash: the requester already holds a verified certificate or
    commit proof naming `block_id`, and each returned block must hash to the id its child
    names as parent. A Byzantine peer can withhold blocks but never forge one.
    """

    epoch: Epoch
    block_id: Hash
    count: Annotated[int, Meta(ge=1, le=BLOCK_REQUEST_COUNT_MAX)]


class BlockResponse(_Canonical, frozen=True, tag="msg_block_response"):
    """The requested block first, then its ancestors, newest to oldest."""

    request_block_id: Hash
    blocks: Annotated[list[Block], Meta(max_length=BLOCK_REQUEST_COUNT_MAX)]


class CommitProof(_Canonical, frozen=True, tag="commit_proof"):
    """Proof that the block `headers[0].parent_id` is committed: the two-chain rule's evidence.

    `headers` are descendants of the committed block, each the parent of the next, all in its
    epoch; the last two (or the committed block and the only header) are in consecutive
    rounds, and `qc` certifies the last. So the last header's parent is committed, and with
    it every ancestor. Checked against the validator set of the committed block's epoch.
    """

    headers: Annotated[list[BlockHeader], Meta(min_length=1, max_length=COMMIT_PROOF_HEADERS_MAX)]
    qc: QuorumCertificate


class EpochChangeRequest(_Canonical, frozen=True, tag="msg_epoch_request"):
    """Sent by a replica that sees messages of a later epoch than its own."""

    epoch: Epoch


class EpochChangeResponse(_Canonical, frozen=True, tag="msg_epoch_response"):
    """The block that ended `ending.epoch` and the proof that it is committed."""

    ending: BlockHeader
    proof: CommitProof


class SafetyState(_Canonical, frozen=True, tag="safety_state"):
    """What the safety rules must have on disk before any signed message leaves the replica."""

    epoch: Epoch
    highest_vote_round: Round
    highest_qc: QuorumCertificate
    # The last vote signed, so a restarted replica re-sends it rather than signing another.
    last_vote: VoteData | None = None
    last_vote_signature: Signature | None = None
    # The TC that justified the last round this replica timed out or voted in: after a
    # restart it can time out again in that round (the timeout rule needs round ==
    # tc.round + 1), so even a cluster that restarted entirely finds its way to a new round.
    last_timeout_certificate: TimeoutCertificate | None = None
    # The highest round this replica signed a proposal in: a leader proposes at most once a
    # round, across restarts, as it votes at most once.
    highest_proposal_round: Round = 0


ConsensusMessage = (
    Proposal
    | Vote
    | Timeout
    | BlockRequest
    | BlockResponse
    | EpochChangeRequest
    | EpochChangeResponse
)


# ---------------------------------------------------------------------- node-local state


class ReputationRound(_Canonical, frozen=True, tag="reputation_round"):
    """One committed block as leader election remembers it."""

    round: Round
    author: NodeId
    signers: Annotated[list[NodeId], Meta(max_length=VALIDATORS_MAX)]  # sorted
    failed: Annotated[list[tuple[Round, NodeId]], Meta(max_length=64)]


class ReputationMark(_Canonical, frozen=True, tag="reputation_mark"):
    """A validator's failure as leader, or block authored: (the number of the committed
    block that recorded it, that block's round, the round failed or authored)."""

    node_id: NodeId
    recorded: U64
    block_round: Round
    round: Round


class ReputationState(_Canonical, frozen=True, tag="reputation"):
    """Leader election's whole state after a commit. A node stores it with each commit, so a
    restarted replica picks the same leaders as its peers without replaying its epoch (never
    sent to peers: each node computes its own from committed blocks)."""

    epoch: Epoch
    recorded: U64
    history: Annotated[list[ReputationRound], Meta(max_length=REPUTATION_WINDOW_MAX + 64)]
    failed: Annotated[list[ReputationMark], Meta(max_length=VALIDATORS_MAX * 8)]
    authored: Annotated[list[ReputationMark], Meta(max_length=VALIDATORS_MAX * 8)]
