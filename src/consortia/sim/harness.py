"""A whole consortium in one process on simulated time, driven by one seed.

The unchanged consensus core (`consortia.consensus.Replica`) runs in every slot. The harness
plays the node's part: it delivers messages through the simulated network, fires timers,
makes safety state durable after a simulated disk delay, answers payload requests, stores
committed blocks, and crashes and restarts replicas (a restart keeps only what was durable).

Byzantine validators are twins: two slots share one key, so they equivocate, double vote and
forget locks whenever the network shows them different things. Invariants are checked as the
run goes (`invariants.Checker`). One seed is one run: the same seed replays the same history.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from consortia.consensus.config import (
    Params,
    ProposalChecker,
    ReplicaSetup,
    genesis_block,
    root_qc_for,
)
from consortia.consensus.events import (
    Action,
    Broadcast,
    Commit,
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
from consortia.consensus.block_sync import bounded_response
from consortia.consensus.replica import Replica
from consortia.consensus.safety import NO_WEAKENING, Weakening
from consortia.crypto import suite as get_suite
from consortia.execution.engine import Engine
from consortia.sim.governed import EngineMembership, GovernanceScript, execute
from consortia.sim.invariants import Checker
from consortia.sim.network import NetworkModel, random_partitions, twin_split_partitions
from consortia.types.consensus import (
    Block,
    BlockHeader,
    BlockResponse,
    ConsensusMessage,
    EpochChangeResponse,
    EpochConfig,
    Proposal,
    QuorumCertificate,
    SafetyState,
    Validator,
    Vote,
)
from consortia.types.signing import block_id

CHAIN_ID = "sim"
PROTOCOL_VERSION = 1
GENESIS_TIME_MS = 0
EVENTS_MAX = 5_000_000  # a run that needs more events than this is stuck in a loop


@dataclass(slots=True)
class Scenario:
    nodes: int = 4
    byzantine: int = 0
    crash: int = 0
    permanent_crash: bool = False
    heights: int = 20
    partitions: bool = False
    seed: int = 0
    suite: str = "intl"
    items_per_block: int = 4
    round_timeout_ms: int = 1000
    latency_ms_min: int = 5
    latency_ms_max: int = 50
    drop_percent: int = 0
    duplicate_percent: int = 0
    leader_reputation: bool = True
    weakening: Weakening = NO_WEAKENING
    # Membership change: from this height on, proposals end epoch 0 and hand over to a set
    # with one more validator (a replica that follows epoch 0 as an observer). 0: never.
    add_validator_at: int = 0
    # With add_validator_at: the change goes through a real governance proposal and votes,
    # executed by every slot's own engine, instead of being scripted into proposals.
    governance: bool = False

    def command(self) -> str:
        """The exact command that replays this run."""
        parts = [
            "consortia sim",
            f"--nodes {self.nodes}",
            f"--byzantine {self.byzantine}",
            f"--crash {self.crash}",
            f"--heights {self.heights}",
            f"--seed {self.seed}",
        ]
        if self.partitions:
            parts.append("--partitions")
        if self.permanent_crash:
            parts.append("--permanent-crash")
        if self.suite != "intl":
            parts.append(f"--suite {self.suite}")
        if not self.leader_reputation:
            parts.append("--no-leader-reputation")
        if self.add_validator_at:
            parts.append(f"--add-validator-at {self.add_validator_at}")
        if self.governance:
            parts.append("--governance")
        for name in ("skip_vote_round_check", "skip_lock_check", "quorum_is_f_plus_one"):
            if getattr(self.weakening, name):
                parts.append(f"--weaken {name}")
        return " ".join(parts)


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    safety_violations: list[str]
    liveness_failures: list[str]
    committed_heights: dict[int, int]
    min_committed_height: int
    messages_sent: int
    rounds: int
    sim_time_ms: int
    commit_latency_ms: list[int]
    mean_latency_ms: float
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.safety_violations and not self.liveness_failures

    @property
    def messages_per_block(self) -> float:
        return self.messages_sent / max(1, self.min_committed_height)

    @property
    def rounds_per_commit(self) -> float:
        return self.rounds / max(1, self.min_committed_height)

    @property
    def commit_latency_round_trips(self) -> float:
        if not self.commit_latency_ms:
            return 0.0
        mean = sum(self.commit_latency_ms) / len(self.commit_latency_ms)
        return mean / (2 * self.mean_latency_ms)

    @property
    def blocks_per_second(self) -> float:
        return 1000 * self.min_committed_height / max(1, self.sim_time_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.scenario.seed,
            "command": self.scenario.command(),
            "safety_violations": self.safety_violations,
            "liveness_failures": self.liveness_failures,
            "min_committed_height": self.min_committed_height,
            "messages_per_block": round(self.messages_per_block, 2),
            "rounds_per_commit": round(self.rounds_per_commit, 3),
            "commit_latency_round_trips": round(self.commit_latency_round_trips, 3),
            "blocks_per_simulated_second": round(self.blocks_per_second, 3),
            "sim_time_ms": self.sim_time_ms,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass(slots=True)
class _Disk:
    """What survives a crash: the durable safety state and the committed chain."""

    safety: SafetyState | None = None
    committed: list[tuple[bytes, Block]] = field(default_factory=list)
    certificate: QuorumCertificate | None = None
    epoch_config: EpochConfig | None = None
    epoch_root_id: bytes = b""
    heights: dict[bytes, int] = field(default_factory=dict)  # block id -> height
    epoch_proofs: list[EpochChangeResponse] = field(default_factory=list)
    voted: dict[bytes, Block] = field(default_factory=dict)  # voted, not yet committed


@dataclass(slots=True)
class _Slot:
    index: int
    node_id: bytes
    private_key: bytes
    honest: bool
    replica: Replica | None
    disk: _Disk
    alive: bool = True
    incarnation: int = 0
    timer: tuple[int, int, int] | None = None  # (epoch, round, deadline)
    permanently_down: bool = False
    persist_done_ms: int = 0
    engine: Engine | None = None
    membership: EngineMembership | None = None


class _ScriptedMembership:
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


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.suite = get_suite(scenario.suite)
        self.now_ms = 0
        self._queue: list[tuple[int, int, str, int, Any]] = []
        self._sequence = 0
        self.messages_sent = 0
        self.max_rounds: dict[int, int] = {}  # epoch -> highest round seen
        self.proposed_at: dict[bytes, int] = {}
        self.commit_latency_ms: list[int] = []
        self._first_commit: set[bytes] = set()
        self.params = Params(
            round_timeout_ms=scenario.round_timeout_ms,
            round_timeout_ms_max=scenario.round_timeout_ms * 8,
            reputation_window=16,
            leader_reputation=scenario.leader_reputation,
        )
        self._build_validators()
        self.network = self._build_network()
        self.checker = Checker(self.suite, honest={s.index for s in self.slots if s.honest})

    # ------------------------------------------------------------------ setup

    def _build_validators(self) -> None:
        scenario = self.scenario
        if scenario.nodes < 1 or not 0 <= scenario.byzantine <= scenario.nodes:
            raise ValueError("need at least one node and at most `nodes` Byzantine validators")
        if scenario.crash > scenario.nodes - scenario.byzantine:
            raise ValueError("cannot crash more validators than there are honest ones")
        keys = []
        extra = 1 if scenario.add_validator_at else 0
        for _ in range(scenario.nodes + extra):
            private_key = self._new_private_key()
            public_key = self.suite.public_key(private_key)
            keys.append((self.suite.hash(public_key), public_key, private_key))
        joining = keys.pop() if extra else None
        keys.sort()
        validators = [Validator(node_id, public_key, 1) for node_id, public_key, _ in keys]
        self.epoch_config = EpochConfig(epoch=0, validators=validators)
        self.next_config: EpochConfig | None = None
        if joining is not None:
            node_id, public_key, _ = joining
            grown = sorted(
                [*validators, Validator(node_id, public_key, 1)], key=lambda v: v.node_id
            )
            self.next_config = EpochConfig(epoch=1, validators=grown)
        self.script: GovernanceScript | None = None
        if joining is not None and scenario.governance:
            node_id, public_key, _ = joining
            self.script = GovernanceScript(
                suite=self.suite,
                chain_id=CHAIN_ID,
                config=self.epoch_config,
                joining=Validator(node_id, public_key, 1),
                account_keys=[self._new_private_key() for _ in validators],
                from_height=scenario.add_validator_at,
            )
        self.genesis = genesis_block(self.suite, CHAIN_ID, PROTOCOL_VERSION, GENESIS_TIME_MS)
        self.genesis_id = block_id(self.suite, self.genesis.header)
        byzantine = set(self.rng.sample(range(scenario.nodes), scenario.byzantine))
        self.slots: list[_Slot] = []
        for index, (node_id, _, private_key) in enumerate(keys):
            self.slots.append(self._new_slot(index, node_id, private_key, index not in byzantine))
        for index in sorted(byzantine):  # the twin of each Byzantine validator
            node_id, _, private_key = keys[index]
            self.slots.append(self._new_slot(len(self.slots), node_id, private_key, False))
        if joining is not None:  # follows epoch 0 as an observer, validates from epoch 1
            node_id, _, private_key = joining
            self.slots.append(self._new_slot(len(self.slots), node_id, private_key, True))
        self.slots_by_node: dict[bytes, list[int]] = {}
        for slot in self.slots:
            self.slots_by_node.setdefault(slot.node_id, []).append(slot.index)

    def _new_private_key(self) -> bytes:
        seed = self.rng.randbytes(32)
        if self.scenario.suite == "intl":
            return seed
        return (int.from_bytes(seed, "big") % (2**255) + 1).to_bytes(32, "big")

    def _new_slot(self, index: int, node_id: bytes, private_key: bytes, honest: bool) -> _Slot:
        disk = _Disk(epoch_config=self.epoch_config, epoch_root_id=self.genesis_id)
        slot = _Slot(index, node_id, private_key, honest, None, disk)
        slot.replica = self._make_replica(slot)
        return slot

    def _make_replica(self, slot: _Slot) -> Replica:
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
        checker: ProposalChecker = _ScriptedMembership(
            self.next_config, self.scenario.add_validator_at
        )
        if self.script is not None:
            # A restarted node rebuilds its state by re-executing the blocks it committed.
            slot.engine = self.script.new_engine()
            for _, block in disk.committed:
                execute(slot.engine, block)
            slot.membership = checker = EngineMembership(slot.engine)
        setup = ReplicaSetup(
            chain_id=CHAIN_ID,
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
        )
        return Replica(setup)

    def _build_network(self) -> NetworkModel:
        scenario = self.scenario
        network = NetworkModel(
            latency_ms_min=scenario.latency_ms_min,
            latency_ms_max=scenario.latency_ms_max,
            drop_percent=scenario.drop_percent,
            duplicate_percent=scenario.duplicate_percent,
            delta_ms=scenario.latency_ms_max,
        )
        if not scenario.partitions and not scenario.byzantine:
            return network
        timeout = scenario.round_timeout_ms
        network.gst_ms = self.rng.randint(8 * timeout, 16 * timeout)
        slots = [slot.index for slot in self.slots]
        twins = [
            (self.slots_by_node[slot.node_id][0], self.slots_by_node[slot.node_id][1])
            for slot in self.slots
            if len(self.slots_by_node[slot.node_id]) == 2 and slot.index < scenario.nodes
        ]
        honest = [slot.index for slot in self.slots if slot.honest]
        if scenario.partitions:
            # Before stabilisation: loss, duplication, long delays (reordering) and partitions.
            network.drop_percent = max(network.drop_percent, 5)
            network.duplicate_percent = max(network.duplicate_percent, 5)
            network.latency_ms_max = max(network.latency_ms_max, 4 * scenario.latency_ms_max)
            network.partitions = random_partitions(
                self.rng, slots, network.gst_ms, self.rng.randint(1, 3), 6 * timeout
            )
        if twins:
            network.partitions += twin_split_partitions(
                self.rng,
                twins,
                honest,
                until_ms=network.gst_ms,
                count=self.rng.randint(1, 3),
                length_ms_max=8 * timeout,
            )
        return network

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        self._schedule_crashes()
        for slot in self.slots:
            self._handle(slot, Start(now_ms=self.now_ms))
        deadline = self._deadline_ms()
        events = 0
        # A run stops at its first safety violation: what follows a fork proves nothing more.
        while self._queue and not self._done() and not self.checker.violations:
            time_ms, _, kind, index, payload = heapq.heappop(self._queue)
            if time_ms > deadline:
                self.now_ms = deadline
                break
            self.now_ms = time_ms
            self._dispatch(kind, self.slots[index], payload)
            events += 1
            assert events < EVENTS_MAX, "simulation exceeded its event budget"
        return self._result(deadline)

    def _deadline_ms(self) -> int:
        # Liveness bound: after stabilisation (and the last restart), each height may take a
        # few rounds, each at most the largest timeout.
        stable = max(self.network.gst_ms, self._last_restart_ms)
        per_height = 4 * self.params.round_timeout_ms_max
        return stable + self.scenario.heights * per_height // 2 + 2 * per_height

    def _done(self) -> bool:
        return all(
            len(slot.disk.committed) >= self.scenario.heights
            for slot in self.slots
            if slot.honest and not slot.permanently_down
        )

    def _schedule_crashes(self) -> None:
        self._last_restart_ms = 0
        honest = [slot for slot in self.slots if slot.honest]
        for slot in self.rng.sample(honest, self.scenario.crash):
            if self.scenario.permanent_crash:
                slot.permanently_down = True
                self._push(0, "crash", slot.index, None)
                continue
            # Crash somewhere in the expected run, stay down for up to a few timeouts.
            expected_ms = self.scenario.heights * 3 * self.scenario.latency_ms_max
            crash_at = self.rng.randint(0, max(1, expected_ms + self.network.gst_ms))
            restart_at = crash_at + self.rng.randint(200, 4 * self.scenario.round_timeout_ms)
            self._last_restart_ms = max(self._last_restart_ms, restart_at)
            self._push(crash_at, "crash", slot.index, None)
            self._push(restart_at, "restart", slot.index, None)

    def _push(self, time_ms: int, kind: str, index: int, payload: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (time_ms, self._sequence, kind, index, payload))

    def _dispatch(self, kind: str, slot: _Slot, payload: Any) -> None:
        if kind == "crash":
            slot.alive = False
            slot.replica = None
            slot.timer = None
            slot.incarnation += 1
            return
        if kind == "restart":
            slot.alive = True
            slot.replica = self._make_replica(slot)
            self._handle(slot, Start(now_ms=self.now_ms))
            return
        incarnation, body = payload
        if not slot.alive or (kind != "deliver" and incarnation != slot.incarnation):
            return
        if kind == "deliver":
            sender, message = body
            self._handle(slot, MessageReceived(self.now_ms, sender, message))
        elif kind == "timer":
            if slot.timer is not None and slot.timer == body:
                slot.timer = None
                self._handle(slot, TimerFired(self.now_ms, body[0], body[1]))
        elif kind == "persist":
            sequence, state, block = body
            slot.disk.safety = state
            if block is not None:
                slot.disk.voted[block_id(self.suite, block.header)] = block
            self._handle(slot, PersistDone(self.now_ms, sequence))
        elif kind == "payload":
            self._handle(slot, body)

    def _handle(self, slot: _Slot, event: Event) -> None:
        replica = slot.replica
        if replica is None:
            return
        for action in replica.handle(event):
            self._perform(slot, action)

    def _perform(self, slot: _Slot, action: Action) -> None:
        if isinstance(action, Send):
            self._send(slot, action.to, action.message)
        elif isinstance(action, Broadcast):
            self._broadcast(slot, action.message)
        elif isinstance(action, SetTimer):
            deadline = self.now_ms + action.delay_ms
            slot.timer = (action.epoch, action.round, deadline)
            self._push(deadline, "timer", slot.index, (slot.incarnation, slot.timer))
            self.max_rounds[action.epoch] = max(self.max_rounds.get(action.epoch, 0), action.round)
        elif isinstance(action, Persist):
            if slot.honest and action.state.last_vote is not None:
                # Every vote a replica signs passes through here, including its own vote
                # when it is the next leader (which never goes out on the network).
                self.checker.signed_vote(slot.index, slot.node_id, action.state.last_vote)
            # A disk completes writes in the order they were issued: a later safety state is
            # never overwritten by an earlier one.
            done_ms = max(self.now_ms + self.rng.randint(0, 3), slot.persist_done_ms)
            slot.persist_done_ms = done_ms
            self._push(
                done_ms,
                "persist",
                slot.index,
                (slot.incarnation, (action.sequence, action.state, action.block)),
            )
        elif isinstance(action, RequestPayload):
            event = self._payload(slot, action)
            self._push(self.now_ms, "payload", slot.index, (slot.incarnation, event))
        elif isinstance(action, Commit):
            self._commit(slot, action)
        elif isinstance(action, EnterEpoch):
            slot.disk.epoch_config = action.config
            if action.proof is not None:
                slot.disk.epoch_proofs.append(action.proof)
        elif isinstance(action, ServeBlocks):
            self._serve_blocks(slot, action)
        elif isinstance(action, Halt):
            self.checker.violation(f"slot {slot.index} halted: {action.reason}")

    def _payload(self, slot: _Slot, action: RequestPayload) -> PayloadReady:
        """What the node's mempool would offer: filler items that differ per slot (so twins
        equivocate), the committee's transactions, and the next epoch when one is due."""
        items = [
            f"{slot.index}:{action.epoch}:{action.round}:{k}".encode()
            for k in range(self.scenario.items_per_block)
        ]
        parent = slot.replica.tree.get(action.parent_id) if slot.replica else None
        height = parent.header.height + 1 if parent is not None else 0
        next_epoch = None
        if self.script is not None and slot.membership is not None and slot.engine is not None:
            items = [*self.script.payload(slot.engine, height), *items]
            next_epoch = slot.membership.next_epoch(action.epoch)
        elif (
            self.next_config is not None
            and action.epoch == 0
            and height >= self.scenario.add_validator_at
        ):
            next_epoch = self.next_config
        return PayloadReady(self.now_ms, action.epoch, action.round, items, next_epoch)

    def _commit(self, slot: _Slot, action: Commit) -> None:
        disk = slot.disk
        for block in action.blocks:
            new_id = block_id(self.suite, block.header)
            disk.committed.append((new_id, block))
            disk.heights[new_id] = len(disk.committed)
            if slot.engine is not None:
                root = execute(slot.engine, block)
                self.checker.executed(slot.index, block.header.height, root)
            self.checker.committed(slot.index, block.header.height, new_id, block)
            if new_id not in self._first_commit:
                self._first_commit.add(new_id)
                proposed = self.proposed_at.get(new_id)
                if proposed is not None:
                    self.commit_latency_ms.append(self.now_ms - proposed)
            if block.header.next_epoch is not None:
                disk.epoch_root_id = new_id
        disk.certificate = action.certificate
        top = len(disk.committed)
        for stale in [i for i, b in disk.voted.items() if b.header.height <= top]:
            del disk.voted[stale]

    def _serve_blocks(self, slot: _Slot, action: ServeBlocks) -> None:
        """What a node's block store does: read committed blocks by id, walking parents."""
        disk = slot.disk
        if action.block_id not in disk.heights:
            voted = disk.voted.get(action.block_id)
            if voted is not None:
                self._send(slot, action.to, BlockResponse(action.block_id, [voted]))
            return

        def committed(wanted: bytes) -> Block | None:
            height = disk.heights.get(wanted)
            return None if height is None else disk.committed[height - 1][1]

        blocks = bounded_response(committed, action.block_id, action.count)
        self._send(slot, action.to, BlockResponse(action.block_id, blocks))

    def _send(self, slot: _Slot, to: bytes, message: ConsensusMessage) -> None:
        self._observe(slot, message)
        for target in self.slots_by_node.get(to, []):
            self._deliver(slot, target, message)

    def _broadcast(self, slot: _Slot, message: ConsensusMessage) -> None:
        self._observe(slot, message)
        for node_id, targets in self.slots_by_node.items():
            if node_id == slot.node_id:
                continue
            for target in targets:
                self._deliver(slot, target, message)

    def _deliver(self, source: _Slot, target: int, message: ConsensusMessage) -> None:
        self.messages_sent += 1
        for delay in self.network.deliveries(self.rng, self.now_ms, source.index, target):
            incarnation = self.slots[target].incarnation
            self._push(
                self.now_ms + delay,
                "deliver",
                target,
                (incarnation, (source.node_id, message)),
            )

    def _observe(self, slot: _Slot, message: ConsensusMessage) -> None:
        if isinstance(message, Vote) and slot.honest:
            self.checker.signed_vote(slot.index, slot.node_id, message.data)
        if isinstance(message, Proposal):
            new_id = block_id(self.suite, message.block.header)
            self.proposed_at.setdefault(new_id, self.now_ms)

    # ------------------------------------------------------------------ results

    def _result(self, deadline: int) -> RunResult:
        heights = {
            slot.index: len(slot.disk.committed)
            for slot in self.slots
            if slot.honest and not slot.permanently_down
        }
        liveness = []
        for index, height in heights.items() if not self.checker.violations else []:
            if height < self.scenario.heights:
                liveness.append(
                    f"slot {index} committed {height} of {self.scenario.heights} blocks "
                    f"by {deadline} ms (stabilisation at {self.network.gst_ms} ms)"
                )
        dropped: dict[str, int] = {}
        for slot in self.slots:
            if slot.replica is not None:
                for reason, count in slot.replica.counters.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + count
        return RunResult(
            scenario=self.scenario,
            safety_violations=list(self.checker.violations),
            liveness_failures=liveness,
            committed_heights=heights,
            min_committed_height=min(heights.values(), default=0),
            messages_sent=self.messages_sent,
            rounds=sum(self.max_rounds.values()),
            sim_time_ms=self.now_ms,
            commit_latency_ms=self.commit_latency_ms,
            mean_latency_ms=self.network.mean_latency_ms,
            dropped=dropped,
        )


def run(scenario: Scenario) -> RunResult:
    return Simulation(scenario).run()
