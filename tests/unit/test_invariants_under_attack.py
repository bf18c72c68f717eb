"""The invariants checked after every event (invariants.py,
`VoteCollector.check`, `Pacemaker.check`, round >= 1 once started): no input a Byzantine
peer can send, no crash and restart, no repeated round timer and no clock jump makes an
honest replica halt on them. Each test drives a real replica and fails on any `Halt`.

The fuzzer (`_Fuzz`) gives three of four keys to the attacker: more than f, so every
certificate it wants is valid. The invariants under test are local and structural: they
must hold whatever the peers sign.
"""

from __future__ import annotations

import dataclasses
import random

import msgspec

from consortia.consensus.config import Params
from consortia.consensus.events import (
    Action,
    Broadcast,
    Commit,
    Event,
    Halt,
    MessageReceived,
    Persist,
    PersistDone,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from consortia.consensus.invariants import before_event, check_invariants
from consortia.consensus.replica import Replica
from consortia.types.consensus import (
    Block,
    BlockRequest,
    BlockResponse,
    QuorumCertificate,
    SafetyState,
    Timeout,
    Vote,
    VoteData,
)
from consortia.types.signing import block_id, sign
from tests.consensus_helpers import (
    CHAIN_ID,
    DOMAIN,
    SUITE,
    Key,
    make_block,
    make_cluster,
    make_proposal,
    make_qc,
    make_setup,
    make_tc,
    make_timeout,
    make_vote,
    of_type,
)

CLUSTER = make_cluster(4)


def _not_leading(rounds: range) -> Key:
    """A validator that leads none of `rounds` (by the replicas' own fresh leader election)."""
    leaders = CLUSTER.leader_election()
    for key in CLUSTER.keys:
        if all(leaders.leader(r) != key.node_id for r in rounds):
            return key
    raise AssertionError("every validator leads one of the rounds")


class _Driven:
    """One replica and the little of a driver it needs: persists acknowledged on demand."""

    def __init__(self, key: Key, safety_state: SafetyState | None = None) -> None:
        self.key = key
        self.replica = Replica(make_setup(CLUSTER, key, safety_state=safety_state))
        self.pending: list[Persist] = []
        self.durable: SafetyState | None = safety_state
        self.actions: list[Action] = []

    def feed(self, event: Event) -> list[Action]:
        actions = self.replica.handle(event)
        assert not of_type(actions, Halt), (event, of_type(actions, Halt))
        assert self.replica.halted is None
        self.pending.extend(of_type(actions, Persist))
        self.actions.extend(actions)
        return actions

    def ack_all(self, now_ms: int) -> None:
        while self.pending:
            persist = self.pending.pop(0)
            self.durable = persist.state
            self.feed(PersistDone(now_ms, persist.sequence))


def test_a_round_timer_firing_again_and_again_never_halts() -> None:
    """Setup: a long partition: the round-1 timer fires twenty times, no TC ever forms, the
    driver acknowledges every persist, and the events' clock jumps back and forth. Test: no
    halt; the back-off counted the round once; every firing re-armed the timer and sent a
    timeout again."""
    node = _Driven(_not_leading(range(1, 3)))
    node.feed(Start(now_ms=0))
    for attempt in range(20):
        now_ms = 1000 * (attempt + 1) if attempt % 3 else 5  # a clock jump back every third
        actions = node.feed(TimerFired(now_ms, 0, 1))
        assert len(of_type(actions, SetTimer)) == 1
        node.ack_all(now_ms)
        pacemaker = node.replica.pacemaker
        assert (pacemaker.timed_out_round, pacemaker.consecutive_timeouts) == (1, 1)
    broadcasts = [a for a in node.actions if isinstance(a, Broadcast)]
    assert sum(isinstance(b.message, Timeout) for b in broadcasts) == 20
    assert node.replica.round == 1


def test_byzantine_timeouts_of_any_round_and_high_qc_never_halt() -> None:
    """Setup: a replica in round 1 gets, from one Byzantine validator, timeouts of round 0,
    of the last admitted round (round + rounds_ahead_max) and beyond it, one carrying a high
    QC above its own round, replays of each, and one carrying a TC of the round before.
    Test: no halt, and the vote collector's invariants hold after each."""
    attacker = CLUSTER.keys[1]
    node = _Driven(CLUSTER.keys[0])
    node.feed(Start(now_ms=0))
    ahead = node.replica.params.rounds_ahead_max
    genesis = CLUSTER.genesis
    block1 = make_block(genesis, CLUSTER.root_qc, round_=1, author=CLUSTER.keys[2].node_id)
    qc1 = make_qc(CLUSTER, block1, CLUSTER.keys[1:])
    tc0 = make_tc(CLUSTER, 3, [(k, 0) for k in CLUSTER.keys[1:]])
    timeouts = [
        make_timeout(attacker, 0, CLUSTER.root_qc),
        make_timeout(attacker, 1 + ahead, CLUSTER.root_qc),
        make_timeout(attacker, 2 + ahead, CLUSTER.root_qc),
        make_timeout(attacker, 1, qc1),  # a high QC of its own round
        make_timeout(attacker, 4, CLUSTER.root_qc, tc0),
    ]
    for now_ms, timeout in enumerate([*timeouts, *timeouts], start=1):
        node.feed(MessageReceived(now_ms, attacker.node_id, timeout))
        assert node.replica.votes.check(node.replica.round, ahead) is None


def test_a_restart_after_timing_out_in_a_round_entered_through_a_tc_never_halts() -> None:
    """Setup: a replica enters round 2 through a TC of round 1, times out in round 2 (its
    state durable), crashes and restarts from that state; its timer fires again twice.
    Test: it resumes in round 2 with the TC, and never halts."""
    key = _not_leading(range(1, 4))
    node = _Driven(key)
    node.feed(Start(now_ms=0))
    others = [k for k in CLUSTER.keys if k != key]
    tc1 = make_tc(CLUSTER, 1, [(k, 0) for k in others])
    timeout = make_timeout(others[0], 2, CLUSTER.root_qc, tc1)
    node.feed(MessageReceived(10, others[0].node_id, timeout))
    assert node.replica.round == 2 and node.replica.last_tc == tc1
    node.feed(TimerFired(2000, 0, 2))
    node.ack_all(2001)
    assert node.durable is not None and node.durable.last_timeout_certificate == tc1
    restarted = _Driven(key, safety_state=node.durable)
    restarted.feed(Start(now_ms=3000))
    assert restarted.replica.round == 2 and restarted.replica.last_tc == tc1
    for now_ms in (4000, 4000, 9000):
        restarted.feed(TimerFired(now_ms, 0, 2))
        restarted.ack_all(now_ms)
    assert restarted.replica.pacemaker.consecutive_timeouts == 1


def test_votes_of_every_round_in_and_around_the_window_never_halt() -> None:
    """Setup: validly signed votes (of real and of made-up rounds for one block) from round
    - 3 to round + rounds_ahead_max + 3, each sent twice, then the round moves on by a QC.
    Test: no halt; nothing is kept outside the window."""
    node = _Driven(CLUSTER.keys[0])
    node.feed(Start(now_ms=0))
    ahead = node.replica.params.rounds_ahead_max
    block1 = make_block(CLUSTER.genesis, CLUSTER.root_qc, round_=1, author=CLUSTER.keys[2].node_id)
    new_id = block_id(SUITE, block1.header)
    voter = CLUSTER.keys[3]
    for round_ in [*range(0, ahead + 5), *range(0, ahead + 5)]:
        data = VoteData(CHAIN_ID, 0, round_, new_id, 1)
        vote = Vote(data, voter.node_id, sign(SUITE, voter.private_key, data, DOMAIN))
        node.feed(MessageReceived(round_ + 1, voter.node_id, vote))
    for signer in CLUSTER.keys[1:]:  # a real QC of round 1: the round moves to 2
        node.feed(MessageReceived(100, signer.node_id, make_vote(block1, signer)))
    assert node.replica.round == 2
    assert min(node.replica.votes.votes) >= 1


# ------------------------------------------------------------------ the fuzzer


@dataclasses.dataclass
class _Fuzz:
    """One honest replica (key 0) against three attacker keys: proposals from each round's
    leader on any known block, votes and timeouts of rounds around the replica's, timers of
    the current and of stale rounds, block responses to its requests, persists acknowledged
    late and in batches, clock jumps backwards, and crashes with a restart from what was
    durable (the committed root, voted blocks, the last commit proof)."""

    seed: int
    steps: int = 300
    restarts: bool = True

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.params = Params()
        self.blocks: list[tuple[Block, QuorumCertificate]] = [(CLUSTER.genesis, CLUSTER.root_qc)]
        self.by_id: dict[bytes, Block] = {CLUSTER.genesis_id: CLUSTER.genesis}
        self.qc_of: dict[bytes, QuorumCertificate] = {CLUSTER.genesis_id: CLUSTER.root_qc}
        self.pending: list[Persist] = []
        self.durable: SafetyState | None = None
        self.voted: dict[bytes, Block] = {}
        self.committed: list[Block] = []
        self.last_proof: QuorumCertificate | None = None
        self.requests: list[tuple[bytes | None, BlockRequest]] = []
        self.now_ms = 0
        self.replica = Replica(make_setup(CLUSTER, CLUSTER.keys[0], params=self.params))

    def feed(self, event: Event) -> None:
        before = before_event(self.replica)
        actions = self.replica.handle(event)
        halts = of_type(actions, Halt)
        assert not halts, f"seed {self.seed}: {event!r} halted the replica: {halts[0].reason}"
        check_invariants(self.replica, before)  # still holds when read again
        for action in actions:
            if isinstance(action, Persist):
                self.pending.append(action)
            elif isinstance(action, Send | Broadcast) and isinstance(action.message, BlockRequest):
                to = action.to if isinstance(action, Send) else None
                self.requests.append((to, action.message))
            elif isinstance(action, Commit):
                self.committed.extend(action.blocks)
                self.last_proof = action.proof

    def run(self) -> int:
        """Drive the replica; return how many blocks it committed (the fuzzer made progress)."""
        self.feed(Start(now_ms=0))
        choices = (
            (0.22, self._proposal),
            (0.40, self._vote),
            (0.62, self._timeout),
            (0.75, self._timer),
            (0.91, self._persisted),
            (0.94, self._restart),
            (1.00, self._blocks),
        )
        for _ in range(self.steps):
            rng = self.rng
            step = [0, 100, 300, 1000, 5000] if rng.random() < 0.3 else [0, 1, 20]
            self.now_ms += rng.choice(step)
            at = self.now_ms  # and now and then a clock that jumps back
            if rng.random() < 0.05:
                at = max(0, at - rng.randint(0, 20_000))
            pick = rng.random()
            make = next(f for bound, f in choices if pick < bound)
            event = make(at)
            if event is not None:
                self.feed(event)
        return len(self.committed)

    def _proposal(self, at: int) -> Event | None:
        rng, round_ = self.rng, self.replica.round
        parent, parent_qc = self.blocks[-1] if rng.random() < 0.6 else rng.choice(self.blocks[-6:])
        next_round = parent.header.round + 1
        if rng.random() < 0.5:
            target = next_round
        elif rng.random() < 0.7:
            target = max(round_, next_round)
        else:
            target = next_round + rng.randint(0, 3)
        leader = self.replica.leaders.leader(target)
        if leader == self.replica.node_id:
            return None
        tc = None
        if parent_qc.round + 1 != target:
            signers = [(k, parent_qc.round) for k in CLUSTER.keys[1:]]
            tc = make_tc(CLUSTER, target - 1, signers, high_qc=parent_qc)
        block = make_block(parent, parent_qc, round_=target, author=leader)
        new_id = block_id(SUITE, block.header)
        qc = make_qc(CLUSTER, block, CLUSTER.keys[1:])
        self.by_id[new_id], self.qc_of[new_id] = block, qc
        self.blocks.append((block, qc))
        proposal = make_proposal(block, CLUSTER.key_of(leader), tc)
        return MessageReceived(at, leader, proposal)

    def _vote(self, at: int) -> Event:
        rng = self.rng
        block, _ = rng.choice(self.blocks[-8:])
        key = rng.choice(CLUSTER.keys[1:])
        if rng.random() < 0.7:
            return MessageReceived(at, key.node_id, make_vote(block, key))
        round_ = max(0, self.replica.round + rng.randint(-3, self.params.rounds_ahead_max + 3))
        data = VoteData(CHAIN_ID, 0, round_, block_id(SUITE, block.header), block.header.height)
        vote = Vote(data, key.node_id, sign(SUITE, key.private_key, data, DOMAIN))
        return MessageReceived(at, key.node_id, vote)

    def _timeout(self, at: int) -> Event:
        rng = self.rng
        key = rng.choice(CLUSTER.keys[1:])
        round_ = max(0, self.replica.round + rng.randint(-2, self.params.rounds_ahead_max + 2))
        _, high_qc = rng.choice(self.blocks[-8:])
        last_tc = None
        if round_ >= 1 and rng.random() < 0.4:
            _, tc_qc = rng.choice(self.blocks[-8:])
            signers = [(k, tc_qc.round) for k in CLUSTER.keys[1:]]
            last_tc = make_tc(CLUSTER, round_ - 1, signers, high_qc=tc_qc)
        timeout = make_timeout(key, round_, high_qc, last_tc)
        if self.last_proof is not None and rng.random() < 0.3:
            timeout = msgspec.structs.replace(timeout, high_commit_qc=self.last_proof)
        return MessageReceived(at, key.node_id, timeout)

    def _timer(self, at: int) -> Event:
        round_ = self.replica.round
        if self.rng.random() < 0.2:
            round_ = max(0, round_ + self.rng.randint(-2, 2))
        return TimerFired(at, self.replica.epoch, round_)

    def _persisted(self, at: int) -> Event | None:
        if not self.pending:
            return None
        count = self.rng.randint(1, len(self.pending))
        for persist in self.pending[:count]:
            self.durable = persist.state
            if persist.block is not None:
                self.voted[block_id(SUITE, persist.block.header)] = persist.block
        sequence = self.pending[count - 1].sequence
        del self.pending[:count]
        return PersistDone(at, sequence)

    def _restart(self, at: int) -> Event | None:
        if not self.restarts:
            return None
        self.pending.clear()
        self.requests.clear()
        setup = make_setup(
            CLUSTER,
            CLUSTER.keys[0],
            params=self.params,
            safety_state=self.durable,
            commit_proof=self.last_proof,
        )
        if self.committed:
            root = self.committed[-1]
            root_id = block_id(SUITE, root.header)
            setup = dataclasses.replace(
                setup,
                root=root,
                root_qc=self.qc_of[root_id],
                recent_committed=list(self.committed),
                voted_blocks=[
                    b for b in self.voted.values() if b.header.height > root.header.height
                ],
            )
        else:
            setup = dataclasses.replace(setup, voted_blocks=list(self.voted.values()))
        self.replica = Replica(setup)
        return Start(now_ms=at)

    def _blocks(self, at: int) -> Event | None:
        if not self.requests:
            return None
        to, request = self.requests.pop(self.rng.randrange(len(self.requests)))
        chain: list[Block] = []
        block = self.by_id.get(request.block_id)
        while block is not None and block.header.height > 0 and len(chain) < request.count:
            chain.append(block)
            block = self.by_id.get(block.header.parent_id)
        if not chain:
            return None
        response = BlockResponse(request_block_id=request.block_id, blocks=chain)
        sender = to if to is not None else self.rng.choice(CLUSTER.keys[1:]).node_id
        return MessageReceived(at, sender, response)


def test_fuzzed_peers_restarts_and_clock_jumps_never_halt_an_honest_replica() -> None:
    """Setup: `_Fuzz` over a dozen seeds, with and without restarts. Test: no halt, and the
    fuzzer is not vacuous: the replica commits blocks and moves through many rounds."""
    committed = 0
    for seed in range(12):
        committed += _Fuzz(seed, restarts=seed % 3 != 0).run()
    assert committed >= 12
