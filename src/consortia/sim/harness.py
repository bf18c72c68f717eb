"""A whole consortium in one process on simulated time, driven by one seed.

The unchanged consensus core (`consortia.consensus.Replica`) runs in every slot. The harness
plays the node's part: it carries every message as bytes through the simulated network (so
the decoder is under test too), fires timers on each replica's own (skewed) clock, makes
safety state durable after a simulated disk delay, answers payload requests, stores committed
blocks, and crashes and restarts replicas at the moments `faults.CrashPlan` aims at (a restart
keeps only what was durable).

Byzantine validators are twins (two slots share one key) or run a strategy beside their own
replica (`adversary.py`). Invariants are checked as the run goes (`invariants.Checker`);
liveness is judged at the end, in rounds and in time. One seed is one run.
"""

from __future__ import annotations

import random

from consortia.consensus.config import Params
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
from consortia.consensus.validators import ValidatorSet
from consortia.crypto import suite as get_suite
from consortia.errors import DecodeError
from consortia.sim.adversary import Frame
from consortia.sim.faults import plan_crashes
from consortia.sim.governed import execute
from consortia.sim.invariants import Checker, RoundProgress
from consortia.sim.scenario import RunResult, Scenario
from consortia.sim.schedule import (
    Crash,
    CrashDue,
    Deliver,
    PayloadOffered,
    PersistLanded,
    Restart,
    Schedule,
    SimEvent,
    TimerDue,
)
from consortia.sim.setup import build
from consortia.sim.slots import CHAIN_ID, Slot
from consortia.types.consensus import ConsensusMessage, Proposal, QuorumCertificate, Timeout, Vote
from consortia.types.encoding import decode, encode
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
        self.frames_refused = 0
        self.max_rounds: dict[int, int] = {}  # epoch -> highest round seen
        self.proposed_at: dict[bytes, int] = {}
        self.commit_latency_ms: list[int] = []
        self._first_commit: set[bytes] = set()
        self._honest_commit: set[bytes] = set()
        self.params = Params(
            round_timeout_ms=scenario.round_timeout_ms,
            round_timeout_ms_max=scenario.round_timeout_ms * 8,
            reputation_window=16,
            leader_reputation=scenario.leader_reputation,
        )
        built = build(scenario, self.rng, self.suite, self.params)
        self.slots = built.slots
        self.slots_by_node = built.slots_by_node
        self.epoch_config = built.epoch_config
        self.next_config = built.next_config
        self.script = built.script
        self.genesis = built.genesis
        self.genesis_id = built.genesis_id
        self.replicas = built.replicas
        self.network = built.network
        self.targeting = built.targeting
        self.checker = Checker(
            self.suite,
            honest={s.index for s in self.slots if s.honest},
            validators={
                config.epoch: ValidatorSet(config, self.suite, CHAIN_ID, domain=built.domain)
                for config in (self.epoch_config, self.next_config)
                if config is not None
            },
        )
        self.progress = RoundProgress()
        self._last_restart_ms = 0

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        expected_ms = self.scenario.heights * 3 * self.scenario.latency_ms_max
        self.crashes = plan_crashes(
            self.rng,
            [slot.index for slot in self.slots if slot.honest],
            self.scenario.crash,
            moment=self.scenario.crash_moment,
            permanent=self.scenario.permanent_crash,
            together=self.scenario.crash_together,
            epoch_changes=bool(self.scenario.add_validator_at),
            expected_ms=expected_ms + self.network.gst_ms,
            round_timeout_ms=self.scenario.round_timeout_ms,
        )
        for index in self.crashes.permanent:
            self.slots[index].permanently_down = True
        self._schedule_crashes(self.crashes.timed)
        if self.crashes.moments:
            self._queue.push(self.crashes.fallback_ms, 0, CrashDue())
        for slot in self.slots:
            self._handle(slot, Start(now_ms=self._local(slot)))
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
        # A safety net in time; the real liveness bound is in rounds (`RoundProgress`).
        stable = max(self.network.gst_ms, self.crashes.latest_restart_ms)
        per_height = 4 * self.params.round_timeout_ms_max
        return stable + self.scenario.heights * per_height // 2 + 2 * per_height

    def _done(self) -> bool:
        return all(
            len(slot.disk.committed) >= self.scenario.heights
            for slot in self.slots
            if slot.honest and not slot.permanently_down
        )

    def _local(self, slot: Slot) -> int:
        """The time on `slot`'s own clock."""
        return self.now_ms + slot.skew_ms

    def _schedule_crashes(self, crashes: list[tuple[int, int, bool]]) -> None:
        for time_ms, index, restart in crashes:
            self._queue.push(time_ms, index, Restart() if restart else Crash())

    def _dispatch(self, slot: Slot, event: SimEvent) -> None:
        if isinstance(event, Crash):
            slot.alive = False
            slot.replica = None
            slot.timer = None
            slot.incarnation += 1
        elif isinstance(event, Restart):
            slot.alive = True
            slot.replica = self.replicas.make(slot)
            self._last_restart_ms = max(self._last_restart_ms, self.now_ms)
            self._handle(slot, Start(now_ms=self._local(slot)))
        elif isinstance(event, CrashDue):
            self._schedule_crashes(self.crashes.fire(self.crashes.fallback(), self.now_ms))
        elif not slot.alive:
            return
        elif isinstance(event, Deliver):
            self._receive(slot, event)
        elif event.incarnation != slot.incarnation:
            return  # scheduled by a life of this slot that has since crashed
        elif isinstance(event, TimerDue):
            if slot.timer is not None and slot.timer == event:
                slot.timer = None
                self._handle(slot, TimerFired(self._local(slot), event.epoch, event.round))
        elif isinstance(event, PersistLanded):
            self._landed(slot, event)
        else:
            ready = event.ready
            self._handle(
                slot,
                PayloadReady(
                    self._local(slot), ready.epoch, ready.round, ready.items, ready.next_epoch
                ),
            )

    def _receive(self, slot: Slot, event: Deliver) -> None:
        try:
            message = decode(event.frame, ConsensusMessage)
        except DecodeError:
            self.frames_refused += 1  # a node's transport drops the frame (and the peer)
            return
        self._handle(slot, MessageReceived(self._local(slot), event.sender, message))
        if slot.strategy is not None and slot.attacker is not None:
            slot.attacker.now_ms = self.now_ms
            for to, frame in slot.strategy.received(slot.attacker, event.sender, message):
                self._transmit(slot, to, frame)

    def _landed(self, slot: Slot, event: PersistLanded) -> None:
        slot.disk.safety = event.state
        if slot.honest and event.state.last_vote is not None:
            # Every vote a replica could ever send is durable first, including its own vote
            # when it is the next leader (which never goes out on the network). A vote signed
            # but lost in a crash before it was durable never left.
            self.checker.signed_vote(slot.index, slot.node_id, event.state.last_vote)
        if event.block is not None:
            slot.disk.voted[block_id(self.suite, event.block.header)] = event.block
        self._handle(slot, PersistDone(self._local(slot), event.sequence))
        fired = self.crashes.after_durable(slot.index, event.state, event.block is not None)
        self._schedule_crashes(self.crashes.fire(fired, self.now_ms) if fired else [])

    def _handle(self, slot: Slot, event: Event) -> None:
        replica = slot.replica
        if replica is None:
            return
        for action in replica.handle(event):
            self._perform(slot, action)
            if slot.strategy is not None and slot.attacker is not None:
                slot.strategy.acted(slot.attacker, action)
            elif slot.honest and slot.replica is not None:
                fired = self.crashes.after_action(slot.index, slot.replica.epoch, action)
                self._schedule_crashes(self.crashes.fire(fired, self.now_ms) if fired else [])

    def _perform(self, slot: Slot, action: Action) -> None:
        if isinstance(action, Send | Broadcast):
            self._send(slot, action)
        elif isinstance(action, SetTimer):
            deadline = self.now_ms + action.delay_ms
            slot.timer = TimerDue(slot.incarnation, action.epoch, action.round, deadline)
            self._queue.push(deadline, slot.index, slot.timer)
            if action.round > self.max_rounds.get(action.epoch, 0):
                self.max_rounds[action.epoch] = action.round
                if slot.honest:
                    self.progress.entered(self.now_ms, action.epoch, action.round)
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
                self._transmit(slot, action.to, response)
        elif isinstance(action, Halt):
            self.checker.violation(f"slot {slot.index} halted: {action.reason}")

    def _send(self, slot: Slot, action: Send | Broadcast) -> None:
        """A message leaves: through the slot's strategy when it is Byzantine."""
        to = action.to if isinstance(action, Send) else None
        if slot.strategy is None or slot.attacker is None:
            self._transmit(slot, to, action.message)
            return
        slot.attacker.now_ms = self.now_ms
        for target, frame in slot.strategy.outgoing(slot.attacker, to, action.message):
            self._transmit(slot, target, frame)

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
            self.checker.finalised(block.header.height, new_id, action.proof)
            if slot.engine is not None:
                root = execute(slot.engine, block)
                self.checker.executed(slot.index, block.header.height, root)
            self.checker.committed(slot.index, block.header.height, new_id, block)
            if slot.honest and new_id not in self._honest_commit:
                self._honest_commit.add(new_id)
                epoch = block.header.epoch
                self.progress.committed(self.now_ms, epoch, self.max_rounds.get(epoch, 0))
            if new_id not in self._first_commit:
                self._first_commit.add(new_id)
                proposed = self.proposed_at.get(new_id)
                if proposed is not None:
                    self.commit_latency_ms.append(self.now_ms - proposed)

    def _transmit(self, slot: Slot, to: bytes | None, frame: Frame) -> None:
        """Send `frame` to the slots of node `to` (every other node's when None)."""
        proposal = False
        if isinstance(frame, bytes):
            data = frame
        else:
            self._observe(slot, frame)
            data = encode(frame)
            proposal = isinstance(frame, Proposal)
        if to is not None:
            targets = self.slots_by_node.get(to, [])
        else:
            targets = [
                target
                for node_id, indexes in self.slots_by_node.items()
                if node_id != slot.node_id
                for target in indexes
            ]
        for target in targets:
            self._deliver(slot, target, data, proposal)

    def _deliver(self, source: Slot, target: int, data: bytes, proposal: bool) -> None:
        self.messages_sent += 1
        delays = self.network.deliveries(self.rng, self.now_ms, source.index, target)
        if self.targeting is not None and self.now_ms >= self.network.gst_ms and delays:
            delays = self.targeting.delay(
                delays,
                to_leader=self._next_leader(self.slots[target]),
                from_leader=self._next_leader(source),
                proposal_to_victim=proposal and target in self.targeting.victims,
            )
        for delay in delays:
            self._queue.push(self.now_ms + delay, target, Deliver(source.node_id, data))

    @staticmethod
    def _next_leader(slot: Slot) -> bool:
        replica = slot.replica
        return replica is not None and replica.leaders.leader(replica.round + 1) == slot.node_id

    def _observe(self, slot: Slot, message: ConsensusMessage) -> None:
        for qc in _certificates(message):
            self.checker.certificate(qc)
        if isinstance(message, Vote) and slot.honest:
            self.checker.signed_vote(slot.index, slot.node_id, message.data)
        if isinstance(message, Proposal):
            header = message.block.header
            new_id = block_id(self.suite, header)
            self.proposed_at.setdefault(new_id, self.now_ms)
            if slot.honest:
                self.checker.proposed(slot.index, slot.node_id, header.epoch, header.round, new_id)

    # ------------------------------------------------------------------ results

    def _result(self, deadline: int) -> RunResult:
        heights = {
            slot.index: len(slot.disk.committed)
            for slot in self.slots
            if slot.honest and not slot.permanently_down
        }
        done = all(height >= self.scenario.heights for height in heights.values())
        stable_ms = max(self.network.gst_ms, self._last_restart_ms)
        stalled = self.progress.rounds_without_commit_max(stable_ms, finished=done)
        liveness = []
        if not self.checker.violations:
            for index, height in heights.items():
                if height < self.scenario.heights:
                    liveness.append(
                        f"slot {index} committed {height} of {self.scenario.heights} blocks "
                        f"by {deadline} ms (stabilisation at {self.network.gst_ms} ms)"
                    )
            bound = self.rounds_without_commit_bound()
            if stalled > bound:
                liveness.append(
                    f"{stalled} rounds passed without a commit after stabilisation "
                    f"(at {stable_ms} ms); the bound is {bound}"
                )
        dropped: dict[str, int] = {}
        refused: dict[str, int] = {}
        for slot in self.slots:
            if slot.replica is not None:
                for reason, count in slot.replica.counters.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + count
                for rule, count in slot.replica.counters.refused.items():
                    refused[rule] = refused.get(rule, 0) + count
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
            refused=refused,
            rounds_without_commit_max=stalled,
            frames_refused=self.frames_refused,
            stable_blocks=sum(1 for t, _, _ in self.progress.commits if t >= stable_ms),
            stable_ms=max(0, self.now_ms - stable_ms),
            strategies={
                slot.index: slot.strategy.name for slot in self.slots if slot.strategy is not None
            }
            | {indexes[1]: "twins" for indexes in self.slots_by_node.values() if len(indexes) == 2},
        )

    def rounds_without_commit_bound(self) -> int:
        """The most rounds the cluster may go without a commit after stabilisation: what f
        faulty leaders in a row cost, plus the rounds a commit needs and a margin."""
        faulty = self.epoch_config.fault_power if self.scenario.byzantine else 0
        crashed = self.scenario.crash if self.scenario.permanent_crash else 0
        return ROUNDS_WITHOUT_COMMIT_BASE + 3 * (faulty + crashed)


# Rounds a commit needs after a failure (two certified consecutive rounds and the QC that
# carries the second), and the rounds the cluster needs to synchronise after stabilisation.
ROUNDS_WITHOUT_COMMIT_BASE = 12


def _certificates(message: ConsensusMessage) -> list[QuorumCertificate]:
    """The QCs a message carries."""
    if isinstance(message, Proposal):
        tc = message.timeout_certificate
        return [message.block.header.justify, *([tc.high_qc] if tc else [])]
    if isinstance(message, Timeout):
        tc = message.last_timeout_certificate
        return [
            message.high_qc,
            *([message.high_commit_qc] if message.high_commit_qc else []),
            *([tc.high_qc] if tc else []),
        ]
    return []


def run(scenario: Scenario) -> RunResult:
    return Simulation(scenario).run()
