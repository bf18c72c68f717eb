"""Inputs (events) and outputs (actions) of the consensus core.

Every event carries `now_ms`, the driver's clock: the only time the core ever sees. Actions
are executed by the driver in order; a `Persist` must be acknowledged with `PersistDone`
before the signed messages it guards are released (the core holds them until then).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consortia.types.consensus import (
    Block,
    ConsensusMessage,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
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
    the payloads pass `replica.RESPONSE_PAYLOAD_BYTES_MAX` bytes (the first block always goes).
    """

    to: bytes
    block_id: bytes
    count: int


@dataclass(frozen=True, slots=True)
class Halt:
    """A broken invariant or an unsupported protocol version: stop the node, say why."""

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


@dataclass(slots=True)
class Counters:
    """What the replica dropped or rejected, by reason. Bounded: reasons are a fixed set."""

    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
