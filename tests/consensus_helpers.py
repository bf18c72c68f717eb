"""Builders for consensus-core tests, and an in-memory driver that links replicas.

Keys are deterministic Ed25519 seeds (the "intl" suite), so every run builds the same
validators, blocks and signatures. `LocalCluster` plays the node's part without the
simulator: it delivers messages in FIFO order, acknowledges every `Persist` at once, answers
payload requests, records commits and fires timers only when nothing else is left to do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from consortia.consensus.block_sync import bounded_response
from consortia.consensus.config import Params, ReplicaSetup, genesis_block, root_qc_for
from consortia.consensus.events import (
    Action,
    Broadcast,
    Commit,
    EnterEpoch,
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
from consortia.consensus.leader import LeaderElection
from consortia.consensus.replica import Replica
from consortia.consensus.safety import NO_WEAKENING, Weakening
from consortia.consensus.validators import ValidatorSet
from consortia.crypto import suite as get_suite
from consortia.types.consensus import (
    Block,
    BlockHeader,
    BlockResponse,
    ConsensusMessage,
    EpochConfig,
    Proposal,
    ProposalData,
    QuorumCertificate,
    SafetyState,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    Validator,
    Vote,
    VoteData,
)
from consortia.types.signing import SigningDomain, block_id, merkle_root, sign

T = TypeVar("T")

SUITE = get_suite("intl")
CHAIN_ID = "test"
PROTOCOL_VERSION = 1
GENESIS_TIME_MS = 0
# The test chain's genesis hash: every signature in these tests commits to it.
GENESIS_HASH = SUITE.hash(b"consortia/test-genesis")
DOMAIN = SigningDomain(GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class Key:
    node_id: bytes
    public_key: bytes
    private_key: bytes


def deterministic_key(label: str) -> Key:
    """The Ed25519 key whose 32-byte seed is the hash of `label`."""
    private_key = SUITE.hash(b"consortia/test-key\x00" + label.encode())
    public_key = SUITE.public_key(private_key)
    return Key(SUITE.hash(public_key), public_key, private_key)


def make_keys(n: int, prefix: str = "validator") -> list[Key]:
    """`n` distinct keys, sorted by node id (the order an EpochConfig requires)."""
    return sorted((deterministic_key(f"{prefix}-{i}") for i in range(n)), key=lambda k: k.node_id)


@dataclass(slots=True)
class Cluster:
    """A validator set of one epoch, its genesis block and the keys behind it."""

    keys: list[Key]
    config: EpochConfig
    genesis: Block
    genesis_id: bytes
    root_qc: QuorumCertificate

    @property
    def node_ids(self) -> list[bytes]:
        return [key.node_id for key in self.keys]

    def key_of(self, node_id: bytes) -> Key:
        return next(key for key in self.keys if key.node_id == node_id)

    def index_of(self, node_id: bytes) -> int:
        return self.node_ids.index(node_id)

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(self.config, SUITE, CHAIN_ID, domain=DOMAIN)

    def leader_election(self, window: int = 16, *, reputation: bool = True) -> LeaderElection:
        return LeaderElection(self.validator_set(), window, reputation=reputation)


def make_cluster(n: int = 4, powers: list[int] | None = None) -> Cluster:
    keys = make_keys(n)
    powers = powers if powers is not None else [1] * n
    assert len(powers) == n
    validators = [
        Validator(key.node_id, key.public_key, power)
        for key, power in zip(keys, powers, strict=True)
    ]
    config = EpochConfig(epoch=0, validators=validators)
    genesis = genesis_block(SUITE, CHAIN_ID, PROTOCOL_VERSION, GENESIS_TIME_MS)
    return Cluster(
        keys=keys,
        config=config,
        genesis=genesis,
        genesis_id=block_id(SUITE, genesis.header),
        root_qc=root_qc_for(SUITE, genesis, 0),
    )


def make_setup(
    cluster: Cluster,
    key: Key,
    *,
    params: Params | None = None,
    safety_state: SafetyState | None = None,
    weakening: Weakening = NO_WEAKENING,
    commit_proof: QuorumCertificate | None = None,
) -> ReplicaSetup:
    return ReplicaSetup(
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        suite=SUITE,
        private_key=key.private_key,
        node_id=key.node_id,
        protocol_version=PROTOCOL_VERSION,
        epoch_config=cluster.config,
        root=cluster.genesis,
        root_qc=cluster.root_qc,
        epoch_root_id=cluster.genesis_id,
        params=params if params is not None else Params(),
        safety_state=safety_state,
        weakening=weakening,
        commit_proof=commit_proof,
    )


def make_replica(cluster: Cluster, key: Key, **kwargs: object) -> Replica:
    return Replica(make_setup(cluster, key, **kwargs))  # type: ignore[arg-type]


# ------------------------------------------------------------------ blocks and certificates


def qc_stub(
    round_: int, block: bytes = bytes(32), height: int = 0, epoch: int = 0
) -> QuorumCertificate:
    """An unsigned QC: enough for the safety rules and the block tree, which never verify."""
    return QuorumCertificate(
        epoch=epoch, round=round_, block_id=block, height=height, signatures=[]
    )


def make_header(
    *,
    round_: int,
    height: int,
    parent_id: bytes,
    justify: QuorumCertificate,
    author: bytes,
    payload: list[bytes] | None = None,
    timestamp_ms: int | None = None,
    epoch: int = 0,
    payload_root: bytes | None = None,
    next_epoch: EpochConfig | None = None,
) -> BlockHeader:
    payload = payload or []
    return BlockHeader(
        chain_id=CHAIN_ID,
        protocol_version=PROTOCOL_VERSION,
        epoch=epoch,
        round=round_,
        height=height,
        parent_id=parent_id,
        justify=justify,
        author=author,
        timestamp_ms=timestamp_ms if timestamp_ms is not None else GENESIS_TIME_MS + round_,
        payload_root=payload_root if payload_root is not None else merkle_root(SUITE, payload),
        payload_count=len(payload),
        next_epoch=next_epoch,
    )


def make_block(
    parent: Block,
    justify: QuorumCertificate,
    *,
    round_: int,
    author: bytes,
    payload: list[bytes] | None = None,
    payload_root: bytes | None = None,
    timestamp_ms: int | None = None,
) -> Block:
    """A block extending `parent`, whose id `justify` must certify."""
    payload = payload or []
    header = make_header(
        round_=round_,
        height=parent.header.height + 1,
        parent_id=block_id(SUITE, parent.header),
        justify=justify,
        author=author,
        payload=payload,
        payload_root=payload_root,
        timestamp_ms=timestamp_ms,
    )
    return Block(header=header, payload=payload)


def make_proposal(
    block: Block,
    key: Key,
    tc: TimeoutCertificate | None = None,
    *,
    signature: bytes | None = None,
) -> Proposal:
    """`block` proposed and signed by `key` (or carrying `signature` as given)."""
    header = block.header
    if signature is None:
        data = ProposalData(CHAIN_ID, header.epoch, header.round, block_id(SUITE, header))
        signature = sign(SUITE, key.private_key, data, DOMAIN)
    return Proposal(block=block, signature=signature, timeout_certificate=tc)


def vote_data_for(block: Block) -> VoteData:
    header = block.header
    return VoteData(CHAIN_ID, header.epoch, header.round, block_id(SUITE, header), header.height)


def make_vote(block: Block, key: Key) -> Vote:
    data = vote_data_for(block)
    return Vote(data=data, author=key.node_id, signature=sign(SUITE, key.private_key, data, DOMAIN))


def make_qc(cluster: Cluster, block: Block, signers: Iterable[Key]) -> QuorumCertificate:
    """A QC for `block` signed by `signers` (not necessarily a quorum)."""
    data = vote_data_for(block)
    entries = sorted(
        (
            SignerSignature(
                cluster.index_of(key.node_id), sign(SUITE, key.private_key, data, DOMAIN)
            )
            for key in signers
        ),
        key=lambda entry: entry.index,
    )
    return QuorumCertificate(
        epoch=data.epoch,
        round=data.round,
        block_id=data.block_id,
        height=data.height,
        signatures=entries,
    )


def make_timeout(
    key: Key,
    round_: int,
    high_qc: QuorumCertificate,
    last_tc: TimeoutCertificate | None = None,
    *,
    high_qc_round: int | None = None,
) -> Timeout:
    """A signed timeout; `high_qc_round` may be set to disagree with `high_qc` on purpose."""
    data = TimeoutData(
        CHAIN_ID,
        high_qc.epoch,
        round_,
        high_qc.round if high_qc_round is None else high_qc_round,
    )
    return Timeout(
        data=data,
        author=key.node_id,
        signature=sign(SUITE, key.private_key, data, DOMAIN),
        high_qc=high_qc,
        last_timeout_certificate=last_tc,
    )


def make_tc(
    cluster: Cluster,
    round_: int,
    signers: Iterable[tuple[Key, int]],
    epoch: int = 0,
    high_qc: QuorumCertificate | None = None,
) -> TimeoutCertificate:
    """A TC of `round_` from (key, high_qc_round) pairs, carrying `high_qc` (by default the
    epoch-0 root QC, for signers whose high QC rounds are all 0)."""
    entries = sorted(
        (
            TimeoutSignature(
                cluster.index_of(key.node_id),
                high_qc_round,
                sign(
                    SUITE,
                    key.private_key,
                    TimeoutData(CHAIN_ID, epoch, round_, high_qc_round),
                    DOMAIN,
                ),
            )
            for key, high_qc_round in signers
        ),
        key=lambda entry: entry.index,
    )
    return TimeoutCertificate(
        epoch=epoch,
        round=round_,
        signatures=entries,
        high_qc=high_qc if high_qc is not None else cluster.root_qc,
    )


# ------------------------------------------------------------------ action inspection


def sent_messages(actions: Iterable[Action]) -> list[ConsensusMessage]:
    """Every message that leaves in `actions` (Send and Broadcast alike)."""
    return [a.message for a in actions if isinstance(a, Send | Broadcast)]


def of_type(items: Iterable[object], kind: type[T]) -> list[T]:
    return [item for item in items if isinstance(item, kind)]


# ------------------------------------------------------------------ the in-memory driver


@dataclass(slots=True)
class _Timer:
    epoch: int
    round: int
    deadline_ms: int


@dataclass(slots=True)
class LocalCluster:
    """Replicas linked in memory; every action is executed at once, in order.

    Messages go through one FIFO queue. `Persist` is made "durable" and acknowledged before
    the next action runs. Timers fire only from `fire_next_timer` (and from `run_until` when
    the queue is empty), which moves the clock to the earliest deadline.
    """

    cluster: Cluster
    replicas: dict[bytes, Replica]
    now_ms: int = 0
    queue: deque[tuple[bytes, bytes, ConsensusMessage]] = field(default_factory=deque)
    timers: dict[bytes, _Timer] = field(default_factory=dict)
    durable: dict[bytes, SafetyState] = field(default_factory=dict)
    commits: dict[bytes, list[Commit]] = field(default_factory=dict)
    halts: list[tuple[bytes, str]] = field(default_factory=list)
    down: set[bytes] = field(default_factory=set)
    log: list[tuple[bytes, Action]] = field(default_factory=list)
    delivered: int = 0
    # Rewrites each action a replica emits before it runs (a Byzantine validator, say).
    tamper: Callable[[bytes, Action], Action] | None = None

    @classmethod
    def build(cls, cluster: Cluster, params: Params | None = None) -> LocalCluster:
        replicas = {key.node_id: make_replica(cluster, key, params=params) for key in cluster.keys}
        return cls(cluster=cluster, replicas=replicas)

    def committed_ids(self, node_id: bytes) -> list[bytes]:
        return [
            block_id(SUITE, block.header)
            for commit in self.commits.get(node_id, [])
            for block in commit.blocks
        ]

    def committed_blocks(self, node_id: bytes) -> list[Block]:
        return [block for commit in self.commits.get(node_id, []) for block in commit.blocks]

    def start(self) -> None:
        for node_id, replica in self.replicas.items():
            if node_id not in self.down:
                self.execute(node_id, replica.handle(Start(self.now_ms)))

    def execute(self, node_id: bytes, actions: list[Action]) -> None:
        replica = self.replicas[node_id]
        for emitted in actions:
            action = emitted if self.tamper is None else self.tamper(node_id, emitted)
            self.log.append((node_id, action))
            if isinstance(action, Send):
                self.queue.append((action.to, node_id, action.message))
            elif isinstance(action, Broadcast):
                for other in self.replicas:
                    if other != node_id:
                        self.queue.append((other, node_id, action.message))
            elif isinstance(action, SetTimer):
                deadline = self.now_ms + action.delay_ms
                self.timers[node_id] = _Timer(action.epoch, action.round, deadline)
            elif isinstance(action, Persist):
                self.durable[node_id] = action.state
                self.execute(node_id, replica.handle(PersistDone(self.now_ms, action.sequence)))
            elif isinstance(action, RequestPayload):
                items = [f"{action.epoch}:{action.round}:{i}".encode() for i in range(2)]
                ready = PayloadReady(self.now_ms, action.epoch, action.round, items)
                self.execute(node_id, replica.handle(ready))
            elif isinstance(action, Commit):
                self.commits.setdefault(node_id, []).append(action)
            elif isinstance(action, ServeBlocks):
                self._serve_blocks(node_id, action)
            elif isinstance(action, Halt):
                self.halts.append((node_id, action.reason))
            else:
                assert isinstance(action, EnterEpoch)

    def _serve_blocks(self, node_id: bytes, action: ServeBlocks) -> None:
        by_id = {block_id(SUITE, block.header): block for block in self.committed_blocks(node_id)}
        blocks = bounded_response(by_id.get, action.block_id, action.count)
        if blocks:
            self.queue.append((action.to, node_id, BlockResponse(action.block_id, blocks)))

    def deliver_one(self) -> bool:
        """Deliver the oldest queued message; False when the queue is empty."""
        while self.queue:
            to, sender, message = self.queue.popleft()
            if to in self.down or sender in self.down or to not in self.replicas:
                continue
            self.delivered += 1
            event = MessageReceived(self.now_ms, sender, message)
            self.execute(to, self.replicas[to].handle(event))
            return True
        return False

    def fire_next_timer(self) -> bool:
        live = {n: t for n, t in self.timers.items() if n not in self.down}
        if not live:
            return False
        deadline = min(timer.deadline_ms for timer in live.values())
        self.now_ms = max(self.now_ms, deadline)
        for node_id, timer in sorted(live.items()):
            if timer.deadline_ms == deadline:
                del self.timers[node_id]
                event = TimerFired(self.now_ms, timer.epoch, timer.round)
                self.execute(node_id, self.replicas[node_id].handle(event))
        return True

    def run_until(self, done: Callable[[], bool], steps_max: int = 20_000) -> bool:
        """Deliver messages (firing timers when idle) until `done()`; False if never."""
        for _ in range(steps_max):
            if done():
                return True
            if not self.deliver_one() and not self.fire_next_timer():
                return done()
        return done()
