"""Inputs (events) and outputs (actions) of the consensus core.

Every event carries `now_ms`, the driver's clock: the only time the core ever sees. Actions
are executed by the driver in order; a `Persist` must be acknowledged with `PersistDone`
before the signed messages it guards are released (the core holds them until then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from consortia.consensus.safety import RefusalRule
from consortia.types.consensus import (
    Block,
    ConsensusMessage,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    ReputationState,
    SafetyState,
)

# Events


@dataclass(frozen=True, slots=True)
class Start:
    """The driver has set the replica up (fresh or recovered) and starts it."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded message from the peer `sender` (authenticated by the transport)."""

    now_ms: int
    sender: bytes
    message: ConsensusMessage


@dataclass(frozen=True, slots=True)
class TimerFired:
    now_ms: int
    epoch: int
    round: int


@dataclass(frozen=True, slots=True)
class PayloadReady:
    """The answer to `RequestPayload`: the items to propose in `round`."""

    now_ms: int
    epoch: int
    round: int
    items: list[bytes]
    # Set by the node when committed state says this block must end the epoch.
    next_epoch: EpochConfig | None = None


@dataclass(frozen=True, slots=True)
class PersistDone:
    """The driver made the `Persist` with this sequence number durable."""

    now_ms: int
    sequence: int


Event = Start | MessageReceived | TimerFired | PayloadReady | PersistDone

# Actions


@dataclass(frozen=True, slots=True)
class Send:
    to: bytes
    message: ConsensusMessage


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every validator of the current epoch except this replica."""

    message: ConsensusMessage


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerFired(epoch, round)` after `delay_ms`; a later SetTimer replaces it."""

    epoch: int
    round: int
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Persist:
    """Make `state` (and `block`, when given) durable, then answer `PersistDone(sequence)`.

    `block` is the block this replica is voting for. The driver keeps it until it is committed
    or pruned and hands it back after a restart (`ReplicaSetup.voted_blocks`), and serves it to
    peers (`ServeBlocks`): even if every replica restarts at once, the certified blocks above
    the committed root survive on the disks of those that voted for them.
    """

    sequence: int
    state: SafetyState
    block: Block | None = None


@dataclass(frozen=True, slots=True)
class RequestPayload:
    """Ask for up to `items_max` payload items (`bytes_max` in all) to extend `parent_id`."""

    epoch: int
    round: int
    parent_id: bytes
    items_max: int
    bytes_max: int


@dataclass(frozen=True, slots=True)
class Commit:
    """Blocks are final, in height order.

    `certificate` certifies the last block; `proof` certifies its child in the next round,
    which is what makes it final (the two-chain rule). The driver stores both.
    """

    blocks: list[Block]
    certificate: QuorumCertificate
    proof: QuorumCertificate
    # Leader election's state once these blocks are recorded (of the epoch they end, when they
    # end one): the driver stores it with the last block, and hands it back at a restart.
    reputation: ReputationState | None = None


@dataclass(frozen=True, slots=True)
class EnterEpoch:
    """The committed chain ended an epoch; from now on `config` is the validator set.

    `proof` shows the epoch's ending block is committed; the driver keeps it with the block
    and hands it back after a restart, so the replica can still help peers left behind.
    """

    config: EpochConfig
    proof: EpochChangeResponse | None = None


@dataclass(frozen=True, slots=True)
class ServeBlocks:
    """Answer a peer's block request from storage: the core no longer holds those blocks.

    The driver sends `BlockResponse(block_id, blocks)` with the committed block `block_id`
    and up to `count - 1` of its ancestors, newest first, if it has them, stopping before
    the payloads pass `block_sync.RESPONSE_PAYLOAD_BYTES_MAX` bytes (the first block always
    goes): `block_sync.bounded_response` builds exactly that list from a lookup by id.
    """

    to: bytes
    block_id: bytes
    count: int


@dataclass(frozen=True, slots=True)
class Halt:
    """A broken invariant: stop the node, say why. The replica answers nothing after it.

    Emitted alone: whatever the failing event had produced before the invariant broke is
    discarded, because the state that produced it is suspect.
    """

    reason: str


Action = (
    Send
    | Broadcast
    | SetTimer
    | Persist
    | RequestPayload
    | Commit
    | EnterEpoch
    | ServeBlocks
    | Halt
)


# Why the replica dropped what a peer sent or refused to act. A closed set: an operator's
# metrics can never show an unknown reason (mypy checks every call site).
DropReason = Literal[
    # membership and epoch
    "non_member",
    "wrong_chain",
    "other_epoch",
    "wrong_protocol_version",
    # certificates and signatures
    "bad_certificate",
    "bad_timeout_certificate",
    "bad_signature",
    # proposals
    "wrong_leader",
    "malformed_proposal",
    "oversized_block",
    "timestamp_in_future",
    "timestamp_not_increasing",
    "unjustified_round",
    "equivocating_proposal",
    "bad_payload_root",
    "proposal_not_current_round",
    "pending_proposals_full",
    "payload_after_epoch_end",
    "bad_epoch_change",
    "bad_payload",
    "block_not_inserted",
    # votes and timeouts
    "vote_round_out_of_range",
    "duplicate_vote",
    "equivocating_vote",
    "vote_after_qc",
    "malformed_vote",
    "malformed_timeout",
    "stale_timeout",
    "timeout_round_out_of_range",
    "duplicate_timeout",
    "unsafe_to_vote",
    "unsafe_to_timeout",
    "unsafe_to_propose",
    # block sync
    "fetches_busy",
    "fetch_timed_out",
    "fetch_too_long",
    "fetch_below_root",
    "unsolicited_blocks",
    "bad_block_response",
    "empty_block_response",
    # epoch change
    "epoch_proof_unknown",
    "stale_epoch_proof",
    "bad_epoch_proof",
]
DROP_REASONS: frozenset[str] = frozenset(get_args(DropReason))


@dataclass(slots=True)
class Counters:
    """What the replica dropped or refused, by reason. Bounded: reasons are closed sets.

    `dropped` counts messages and actions dropped (`DropReason`); `refused` counts the safety
    rules' refusals to sign, by the rule that refused (`safety.RefusalRule`).
    """

    dropped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def refuse(self, rule: RefusalRule) -> None:
        self.refused[rule] = self.refused.get(rule, 0) + 1
