"""One simulated validator process (a slot): its disk, and the node's part the harness plays.

Owns what survives a crash (`Disk`: the durable safety state, the committed chain, the
blocks voted for, the epoch proofs) and how a replica is rebuilt from it (`ReplicaFactory`),
how committed blocks are stored, and how a peer's block request is answered from the store.
A real node does the same against its storage (`node/`, `storage/`). Never schedules events
and never reads the simulator's randomness: `harness.py` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from consortia.consensus.block_sync import serve_from_store
from consortia.consensus.config import (
    Params,
    ProposalChecker,
    ReplicaSetup,
    root_qc_for,
)
from consortia.consensus.events import Commit, ServeBlocks
from consortia.consensus.replica import Replica
from consortia.crypto import Suite
from consortia.execution.engine import Engine
from consortia.sim.adversary import Attacker, Strategy
from consortia.sim.governed import EngineMembership, GovernanceScript, execute
from consortia.sim.scenario import Scenario
from consortia.sim.schedule import TimerDue
from consortia.types.consensus import (
    Block,
    BlockHeader,
    BlockResponse,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    ReputationState,
    SafetyState,
)
from consortia.types.signing import block_id

CHAIN_ID = "sim"
PROTOCOL_VERSION = 1
GENESIS_TIME_MS = 0


@dataclass(slots=True)
class Disk:
    """What survives a crash: the durable safety state and the committed chain."""

    safety: SafetyState | None = None
    committed: list[tuple[bytes, Block]] = field(default_factory=list)
    certificate: QuorumCertificate | None = None
    proof: QuorumCertificate | None = None  # the QC that made the last commit final
    epoch_config: EpochConfig | None = None
    epoch_root_id: bytes = b""
    heights: dict[bytes, int] = field(default_factory=dict)  # block id -> height
    epoch_proofs: list[EpochChangeResponse] = field(default_factory=list)
    voted: dict[bytes, Block] = field(default_factory=dict)  # voted, not yet committed
    reputation: ReputationState | None = None  # leader election's, from the last Commit

    def store_commit(self, suite: Suite, action: Commit) -> list[tuple[bytes, Block]]:
        """Append the committed blocks; forget the voted blocks they cover. Returns them."""
        stored: list[tuple[bytes, Block]] = []
        for block in action.blocks:
            new_id = block_id(suite, block.header)
            self.committed.append((new_id, block))
            self.heights[new_id] = len(self.committed)
            stored.append((new_id, block))
            if block.header.next_epoch is not None:
                self.epoch_root_id = new_id
        self.certificate = action.certificate
        self.proof = action.proof
        self.reputation = action.reputation
        top = len(self.committed)
        for stale in [i for i, b in self.voted.items() if b.header.height <= top]:
            del self.voted[stale]
        return stored

    def answer(self, action: ServeBlocks) -> BlockResponse | None:
        """What a node's block store does: committed blocks by id walking parents, or the
        voted block asked for; None when the store has neither."""

        def committed(wanted: bytes) -> Block | None:
            height = self.heights.get(wanted)
            return None if height is None else self.committed[height - 1][1]

        blocks = serve_from_store(committed, self.voted.get, action.block_id, action.count)
        return BlockResponse(action.block_id, blocks) if blocks else None


@dataclass(slots=True)
class Slot:
    index: int
    node_id: bytes
    private_key: bytes
    honest: bool
    replica: Replica | None
    disk: Disk
    alive: bool = True
    incarnation: int = 0
    timer: TimerDue | None = None
    permanently_down: bool = False
    persist_done_ms: int = 0
    engine: Engine | None = None
    membership: EngineMembership | None = None
    skew_ms: int = 0  # this replica's clock runs this far ahead of simulated time
    # A Byzantine validator that is not a twin: what it knows, and what it does.
    attacker: Attacker | None = None
    strategy: Strategy | None = None


class ScriptedMembership:
    """The node's say on epoch changes, scripted: exactly one change, at a given height."""

    def __init__(self, next_config: EpochConfig | None, from_height: int) -> None:
        self._next_config = next_config
        self._from_height = from_height

    def check_payload(self, header: BlockHeader, payload: list[bytes]) -> bool:
        return True

    def check_epoch_change(self, header: BlockHeader, config: EpochConfig) -> bool:
        return (
            self._next_config is not None
            and config == self._next_config
            and header.height >= self._from_height
        )


@dataclass(slots=True)
class ReplicaFactory:
    """Builds a slot's replica from its disk, as a node does at start and after a crash."""

    suite: Suite
    params: Params
    scenario: Scenario
    genesis: Block
    next_config: EpochConfig | None
    script: GovernanceScript | None
    genesis_hash: bytes

    def make(self, slot: Slot) -> Replica:
        disk = slot.disk
        assert disk.epoch_config is not None
        if disk.committed and disk.committed[-1][0] == disk.epoch_root_id:
            root_id, root = disk.committed[-1]
            certificate = root_qc_for(self.suite, root, disk.epoch_config.epoch)
        elif disk.committed:
            root_id, root = disk.committed[-1]
            assert disk.certificate is not None and disk.certificate.block_id == root_id
            certificate = disk.certificate
        else:
            root = self.genesis
            certificate = root_qc_for(self.suite, root, 0)
        # The whole current epoch: leader reputation replayed from a truncated history can
        # disagree with peers' for a while (each block's failed leaders depend on the window
        # before it). Replaying costs microseconds a block.
        epoch = disk.epoch_config.epoch
        recent = [block for _, block in disk.committed if block.header.epoch == epoch]
        checker: ProposalChecker = ScriptedMembership(
            self.next_config, self.scenario.add_validator_at
        )
        if self.script is not None:
            # A restarted node rebuilds its state by re-executing the blocks it committed.
            slot.engine = self.script.new_engine()
            for _, block in disk.committed:
                execute(slot.engine, block)
            slot.membership = checker = EngineMembership(slot.engine, envelopes_only=False)
        setup = ReplicaSetup(
            chain_id=CHAIN_ID,
            genesis_hash=self.genesis_hash,
            suite=self.suite,
            private_key=slot.private_key,
            node_id=slot.node_id,
            protocol_version=PROTOCOL_VERSION,
            epoch_config=disk.epoch_config,
            root=root,
            root_qc=certificate,
            epoch_root_id=disk.epoch_root_id,
            params=self.params,
            safety_state=disk.safety,
            recent_committed=recent,
            weakening=self.scenario.weakening,
            checker=checker,
            epoch_proofs=list(disk.epoch_proofs),
            voted_blocks=list(disk.voted.values()),
            commit_proof=disk.proof,
            reputation=disk.reputation,
        )
        replica = Replica(setup)
        if disk.reputation is not None and disk.reputation.epoch == epoch:
            # The node restores the stored state instead of replaying its epoch: it must be
            # exactly what the replay gives.
            replayed = Replica(dataclasses.replace(setup, reputation=None))
            if replayed.leaders.state() != replica.leaders.state():
                raise AssertionError(f"slot {slot.index}: stored reputation differs from replay")
        return replica
