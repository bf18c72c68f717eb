"""What a replica needs to start: identity, parameters, the epoch and where it left off.

Owns `Params` (checked on construction) and `ReplicaSetup`. The consensus defaults that a
genesis file can set are written once, in `consortia.types.genesis.ConsensusParams`; `Params`
takes its defaults from there and `Params.from_genesis` carries a chain's choices over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from consortia.consensus.safety import NO_WEAKENING, Weakening
from consortia.crypto import Suite
from consortia.errors import ConfigError
from consortia.types.consensus import (
    ZERO_HASH,
    Block,
    BlockHeader,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    ReputationState,
    SafetyState,
)
from consortia.types.genesis import (
    BACKOFF_PERCENT_MAX,
    BACKOFF_PERCENT_MIN,
    ConsensusParams,
    round_timeouts_ordered,
)
from consortia.types.primitives import REPUTATION_WINDOW_MAX
from consortia.types.signing import block_id, merkle_root

_GENESIS_DEFAULTS = ConsensusParams()


@dataclass(frozen=True, slots=True)
class Params:
    """Consensus parameters (genesis `consensus` section; governance may change them).

    Checked on construction: every bound positive, the first timeout within the largest, the
    back-off between 100 and 400 percent. A bad value raises `ConfigError`, never later.
    """

    round_timeout_ms: int = _GENESIS_DEFAULTS.round_timeout_ms
    round_timeout_ms_min: int = _GENESIS_DEFAULTS.round_timeout_ms_min
    round_timeout_ms_max: int = _GENESIS_DEFAULTS.round_timeout_ms_max
    timeout_backoff_percent: int = _GENESIS_DEFAULTS.timeout_backoff_percent
    block_payload_items_max: int = _GENESIS_DEFAULTS.block_payload_items_max
    block_bytes_max: int = _GENESIS_DEFAULTS.block_bytes_max
    reputation_window: int = _GENESIS_DEFAULTS.reputation_window
    # How far ahead of its own round a replica buffers votes and timeouts.
    rounds_ahead_max: int = 8
    # Proposals waiting for missing ancestors, and blocks fetched but not yet connected.
    pending_proposals_max: int = 16
    fetched_blocks_max: int = 8192
    # A proposal's timestamp may run ahead of this replica's clock by at most this much.
    clock_skew_ms_max: int = 30_000
    # Leader reputation can be switched off (plain weighted rotation) to measure its worth.
    leader_reputation: bool = True

    def __post_init__(self) -> None:
        for name in (
            "round_timeout_ms",
            "round_timeout_ms_min",
            "round_timeout_ms_max",
            "block_payload_items_max",
            "block_bytes_max",
            "reputation_window",
            "rounds_ahead_max",
            "pending_proposals_max",
            "fetched_blocks_max",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"consensus parameter {name} must be a positive integer")
        if self.reputation_window > REPUTATION_WINDOW_MAX:
            raise ConfigError(f"reputation_window must be at most {REPUTATION_WINDOW_MAX}")
        if type(self.clock_skew_ms_max) is not int or self.clock_skew_ms_max < 0:
            raise ConfigError("consensus parameter clock_skew_ms_max must be at least 0")
        if not round_timeouts_ordered(
            self.round_timeout_ms_min, self.round_timeout_ms, self.round_timeout_ms_max
        ):
            raise ConfigError(
                "round timeouts must be ordered: round_timeout_ms_min <= round_timeout_ms "
                "<= round_timeout_ms_max"
            )
        if not BACKOFF_PERCENT_MIN <= self.timeout_backoff_percent <= BACKOFF_PERCENT_MAX:
            raise ConfigError(
                f"timeout_backoff_percent must be between {BACKOFF_PERCENT_MIN} and "
                f"{BACKOFF_PERCENT_MAX}"
            )

    @classmethod
    def from_genesis(cls, consensus: ConsensusParams) -> Params:
        """The parameters a chain's genesis sets; the rest keep their defaults."""
        return cls(
            round_timeout_ms=consensus.round_timeout_ms,
            round_timeout_ms_min=consensus.round_timeout_ms_min,
            round_timeout_ms_max=consensus.round_timeout_ms_max,
            timeout_backoff_percent=consensus.timeout_backoff_percent,
            block_payload_items_max=consensus.block_payload_items_max,
            block_bytes_max=consensus.block_bytes_max,
            reputation_window=consensus.reputation_window,
        )


class ProposalChecker(Protocol):
    """The node's say on a proposal: payload validity and epoch changes. Must be deterministic."""

    def check_payload(self, header: BlockHeader, payload: list[bytes]) -> bool: ...

    def check_epoch_change(self, header: BlockHeader, config: EpochConfig) -> bool: ...


class AcceptPayloadRejectEpochChange:
    """Default checker: any payload; no epoch change unless the node says so."""

    def check_payload(self, header: BlockHeader, payload: list[bytes]) -> bool:
        return True

    def check_epoch_change(self, header: BlockHeader, config: EpochConfig) -> bool:
        return False


@dataclass(slots=True)
class ReplicaSetup:
    chain_id: str
    # The hash of the chain's genesis document: every signature commits to it.
    genesis_hash: bytes
    suite: Suite
    private_key: bytes
    node_id: bytes
    protocol_version: int
    epoch_config: EpochConfig
    root: Block
    root_qc: QuorumCertificate
    # The block the current epoch started from (the genesis block in epoch 0).
    epoch_root_id: bytes
    params: Params = field(default_factory=Params)
    safety_state: SafetyState | None = None
    # Committed blocks of the current epoch up to the root, oldest first, for leader
    # reputation. Give the whole epoch: a truncated replay can pick other leaders than peers
    # do for a while (liveness only), since each block's failed leaders depend on the window
    # before it.
    recent_committed: list[Block] = field(default_factory=list)
    # Or, instead, leader election's state as the last `Commit` carried it (used when it is
    # of the current epoch; then `recent_committed` is not replayed).
    reputation: ReputationState | None = None
    checker: ProposalChecker = field(default_factory=AcceptPayloadRejectEpochChange)
    # Blocks this replica voted for above the root (from Persist), kept by the driver.
    voted_blocks: list[Block] = field(default_factory=list)
    # Proofs of the epoch changes this replica committed (from EnterEpoch), kept by the driver.
    epoch_proofs: list[EpochChangeResponse] = field(default_factory=list)
    # The QC that made the last commit final (`Commit.proof`), kept by the driver: timeouts
    # carry it so that peers reach the same commits, hence the same leaders, after a restart.
    commit_proof: QuorumCertificate | None = None
    weakening: Weakening = NO_WEAKENING


def genesis_block(
    suite: Suite, chain_id: str, protocol_version: int, genesis_time_ms: int
) -> Block:
    """Height 0: the common root every replica starts from. It carries nothing."""
    empty_qc = QuorumCertificate(epoch=0, round=0, block_id=ZERO_HASH, height=0, signatures=[])
    header = BlockHeader(
        chain_id=chain_id,
        protocol_version=protocol_version,
        epoch=0,
        round=0,
        height=0,
        parent_id=ZERO_HASH,
        justify=empty_qc,
        author=ZERO_HASH,
        timestamp_ms=genesis_time_ms,
        payload_root=merkle_root(suite, []),
        payload_count=0,
    )
    return Block(header=header, payload=[])


def root_qc_for(suite: Suite, root: Block, epoch: int) -> QuorumCertificate:
    """The unsigned QC that certifies an epoch's root block (round 0 of `epoch`)."""
    return QuorumCertificate(
        epoch=epoch,
        round=0,
        block_id=block_id(suite, root.header),
        height=root.header.height,
        signatures=[],
    )
