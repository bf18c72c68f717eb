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

import random

from consortia.consensus.config import Params, genesis_block
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
from consortia.crypto import suite as get_suite
from consortia.sim.governed import GovernanceScript, execute
from consortia.sim.invariants import Checker
from consortia.sim.network import NetworkModel, random_partitions, twin_split_partitions
from consortia.sim.scenario import RunResult, Scenario
from consortia.sim.schedule import (
    Crash,
    Deliver,
    PayloadOffered,
    PersistLanded,
    Restart,
    Schedule,
    SimEvent,
    TimerDue,
)
from consortia.sim.slots import (
    CHAIN_ID,
    GENESIS_TIME_MS,
    PROTOCOL_VERSION,
    Disk,
    ReplicaFactory,
    Slot,
)
from consortia.types.consensus import ConsensusMessage, EpochConfig, Proposal, Validator, Vote
from consortia.types.signing import block_id

EVENTS_MAX = 5_000_000  # a run that needs more events than this is stuck in a loop


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.suite = get_suite(scenario.suite)
        self.now_ms = 0
        self._queue = Schedule()
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
        self.replicas = ReplicaFactory(
            self.suite, self.params, scenario, self.genesis, self.next_config, self.script
        )
        byzantine = set(self.rng.sample(range(scenario.nodes), scenario.byzantine))
        self.slots: list[Slot] = []
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

    def _new_slot(self, index: int, node_id: bytes, private_key: bytes, honest: bool) -> Slot:
        disk = Disk(epoch_config=self.epoch_config, epoch_root_id=self.genesis_id)
        slot = Slot(index, node_id, private_key, honest, None, disk)
        slot.replica = self.replicas.make(slot)
        return slot

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
            time_ms, index, event = self._queue.pop()
            if time_ms > deadline:
                self.now_ms = deadline
                break
            self.now_ms = time_ms
            self._dispatch(self.slots[index], event)
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
                self._queue.push(0, slot.index, Crash())
                continue
            # Crash somewhere in the expected run, stay down for up to a few timeouts.
            expected_ms = self.scenario.heights * 3 * self.scenario.latency_ms_max
            crash_at = self.rng.randint(0, max(1, expected_ms + self.network.gst_ms))
            restart_at = crash_at + self.rng.randint(200, 4 * self.scenario.round_timeout_ms)
            self._last_restart_ms = max(self._last_restart_ms, restart_at)
            self._queue.push(crash_at, slot.index, Crash())
            self._queue.push(restart_at, slot.index, Restart())

    def _dispatch(self, slot: Slot, event: SimEvent) -> None:
        if isinstance(event, Crash):
            slot.alive = False
            slot.replica = None
            slot.timer = None
            slot.incarnation += 1
        elif isinstance(event, Restart):
            slot.alive = True
            slot.replica = self.replicas.make(slot)
            self._handle(slot, Start(now_ms=self.now_ms))
        elif not slot.alive:
            return
        elif isinstance(event, Deliver):
            self._handle(slot, MessageReceived(self.now_ms, event.sender, event.message))
        elif event.incarnation != slot.incarnation:
            return  # scheduled by a life of this slot that has since crashed
        elif isinstance(event, TimerDue):
            if slot.timer is not None and slot.timer == event:
                slot.timer = None
                self._handle(slot, TimerFired(self.now_ms, event.epoch, event.round))
        elif isinstance(event, PersistLanded):
            slot.disk.safety = event.state
            if slot.honest and event.state.last_vote is not None:
                # Every vote a replica could ever send is durable first, including its own
                # vote when it is the next leader (which never goes out on the network). A
                # vote signed but lost in a crash before it was durable never left.
                self.checker.signed_vote(slot.index, slot.node_id, event.state.last_vote)
            if event.block is not None:
                slot.disk.voted[block_id(self.suite, event.block.header)] = event.block
            self._handle(slot, PersistDone(self.now_ms, event.sequence))
        else:
            self._handle(slot, event.ready)

    def _handle(self, slot: Slot, event: Event) -> None:
        replica = slot.replica
        if replica is None:
            return
        for action in replica.handle(event):
            self._perform(slot, action)

    def _perform(self, slot: Slot, action: Action) -> None:
        if isinstance(action, Send):
            self._send(slot, action.to, action.message)
        elif isinstance(action, Broadcast):
            self._broadcast(slot, action.message)
        elif isinstance(action, SetTimer):
            deadline = self.now_ms + action.delay_ms
            slot.timer = TimerDue(slot.incarnation, action.epoch, action.round, deadline)
            self._queue.push(deadline, slot.index, slot.timer)
            self.max_rounds[action.epoch] = max(self.max_rounds.get(action.epoch, 0), action.round)
        elif isinstance(action, Persist):
            # A disk completes writes in the order they were issued: a later safety state is
            # never overwritten by an earlier one.
            done_ms = max(self.now_ms + self.rng.randint(0, 3), slot.persist_done_ms)
            slot.persist_done_ms = done_ms
            landed = PersistLanded(slot.incarnation, action.sequence, action.state, action.block)
            self._queue.push(done_ms, slot.index, landed)
        elif isinstance(action, RequestPayload):
            offered = PayloadOffered(slot.incarnation, self._payload(slot, action))
            self._queue.push(self.now_ms, slot.index, offered)
        elif isinstance(action, Commit):
            self._commit(slot, action)
        elif isinstance(action, EnterEpoch):
            slot.disk.epoch_config = action.config
            if action.proof is not None:
                slot.disk.epoch_proofs.append(action.proof)
        elif isinstance(action, ServeBlocks):
            response = slot.disk.answer(action)
            if response is not None:
                self._send(slot, action.to, response)
        elif isinstance(action, Halt):
            self.checker.violation(f"slot {slot.index} halted: {action.reason}")

    def _payload(self, slot: Slot, action: RequestPayload) -> PayloadReady:
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

    def _commit(self, slot: Slot, action: Commit) -> None:
        for new_id, block in slot.disk.store_commit(self.suite, action):
            if slot.engine is not None:
                root = execute(slot.engine, block)
                self.checker.executed(slot.index, block.header.height, root)
            self.checker.committed(slot.index, block.header.height, new_id, block)
            if new_id not in self._first_commit:
                self._first_commit.add(new_id)
                proposed = self.proposed_at.get(new_id)
                if proposed is not None:
                    self.commit_latency_ms.append(self.now_ms - proposed)

    def _send(self, slot: Slot, to: bytes, message: ConsensusMessage) -> None:
        self._observe(slot, message)
        for target in self.slots_by_node.get(to, []):
            self._deliver(slot, target, message)

    def _broadcast(self, slot: Slot, message: ConsensusMessage) -> None:
        self._observe(slot, message)
        for node_id, targets in self.slots_by_node.items():
            if node_id == slot.node_id:
                continue
            for target in targets:
                self._deliver(slot, target, message)

    def _deliver(self, source: Slot, target: int, message: ConsensusMessage) -> None:
        self.messages_sent += 1
        for delay in self.network.deliveries(self.rng, self.now_ms, source.index, target):
            self._queue.push(self.now_ms + delay, target, Deliver(source.node_id, message))

    def _observe(self, slot: Slot, message: ConsensusMessage) -> None:
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
