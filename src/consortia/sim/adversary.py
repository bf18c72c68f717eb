"""Byzantine strategies: what a faulty validator does, with only what a real attacker has.

A Byzantine validator runs the consortia replica as its brain (so it knows rounds, leaders
and certificates as any node does) and a strategy between the brain and the network: every
message the brain sends passes through `Strategy.outgoing`, which may drop, alter, split or
multiply it, and every message the validator receives is shown to `Strategy.received`, which
may answer with messages of its own making. A strategy holds nothing a real attacker lacks:
its own private key, what it received, and its own node's state. It never touches another
slot, the network model or the checker.

Strategies (`consortia sim --strategy NAME`):
* `twins` (`TWINS`): two slots share one key (the harness builds them; no strategy object).
* `equivocate`: as leader, sends different proposals to different peers.
* `forge-tc`: withholds its proposals and timeouts; completes 2f honest timeouts with its
  own entry claiming a high QC that does not exist, and broadcasts that TC.
* `stale-qc`: as leader of a round entered by TC, proposes on the oldest QC it knows, with
  the TC: honest voters must refuse it (the lock rule).
* `withhold`: sends each message to a random part of its recipients only.
* `silent`: goes quiet for good at a chosen moment (after the epoch's first commit, after a
  block it authored is committed, or at a random time).
* `flood`: behaves, and adds far-future timeouts, replays, bad signatures, oversized and
  malformed frames.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

import msgspec

from consortia.consensus.events import Action, Commit
from consortia.consensus.replica import Replica
from consortia.crypto import Suite
from consortia.types.consensus import (
    Block,
    BlockHeader,
    BlockResponse,
    ConsensusMessage,
    Proposal,
    ProposalData,
    QuorumCertificate,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    Vote,
    VoteData,
)
from consortia.types.encoding import MESSAGE_SIZE_MAX, encode
from consortia.types.signing import SigningDomain, block_id, merkle_root, sign

TWINS: Final = "twins"
# Strategies played by two slots sharing one key, so that the attacker shows two sides of a
# partition two different histories.
TWINNED: Final = (TWINS, "stale-qc")
# A frame is a message, or raw bytes that the receiver's decoder must refuse.
Frame = ConsensusMessage | bytes
# (recipient node id, or None for every peer; the frame)
Outgoing = tuple[bytes | None, Frame]
# One oversized frame, shared: a receiver refuses it by its length before parsing.
_OVERSIZED: Final = bytes(MESSAGE_SIZE_MAX + 1)
_REPLAYS_KEPT: Final = 64
_ARCHIVED_MAX: Final = 256


@dataclass(slots=True)
class Attacker:
    """What a Byzantine validator knows: its key, its peers, its own replica, and a source of
    randomness of its own (drawn from the seed, so runs replay)."""

    node_id: bytes
    private_key: bytes
    suite: Suite
    chain_id: str
    domain: SigningDomain
    peers: list[bytes]
    rng: random.Random
    brain: Replica | None = None
    now_ms: int = 0

    def sign(self, payload: VoteData | TimeoutData | ProposalData) -> bytes:
        return sign(self.suite, self.private_key, payload, self.domain)


class Strategy:
    """Honest by default: sends what the brain sends, adds nothing."""

    name: ClassVar[str] = "honest"

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        return [(to, message)]

    def received(self, a: Attacker, sender: bytes, message: ConsensusMessage) -> list[Outgoing]:
        return []

    def acted(self, a: Attacker, action: Action) -> None:
        """Every action of the brain (commits, timers, ...), after it was carried out."""


def _split(a: Attacker, peers: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    shuffled = peers[:]
    a.rng.shuffle(shuffled)
    cut = max(1, len(shuffled) // 2)
    return shuffled[:cut], shuffled[cut:]


def _rebuilt(a: Attacker, header: BlockHeader, payload: list[bytes], **changes: object) -> Block:
    """A block like `header`'s with `payload` and other fields changed, consistently hashed."""
    new_header = msgspec.structs.replace(
        header,
        payload_root=merkle_root(a.suite, payload),
        payload_count=len(payload),
        **changes,
    )
    return Block(header=new_header, payload=payload)


def _signed(a: Attacker, block: Block, tc: TimeoutCertificate | None) -> Proposal:
    header = block.header
    data = ProposalData(a.chain_id, header.epoch, header.round, block_id(a.suite, header))
    return Proposal(block=block, signature=a.sign(data), timeout_certificate=tc)


class Equivocate(Strategy):
    name = "equivocate"

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        if to is not None or not isinstance(message, Proposal):
            return [(to, message)]
        header = message.block.header
        other = _rebuilt(a, header, [*message.block.payload, b"equivocation:%d" % header.round])
        twin = _signed(a, other, message.timeout_certificate)
        first, second = _split(a, a.peers)
        sent: list[Outgoing] = [(peer, message) for peer in first]
        # One peer sees both: the refusal of a second proposal in a round is under test too.
        return sent + [(peer, twin) for peer in [*second, first[0]]]


@dataclass(slots=True)
class _Round:
    """Honest timeouts of one round, as the attacker collects them."""

    entries: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    best_qc: QuorumCertificate | None = None
    used: bool = False


def _gather(
    a: Attacker, rounds: dict[tuple[int, int], _Round], timeout: Timeout
) -> tuple[_Round, int] | None:
    """Keep an honest peer's verified timeout; return its round's collection and the
    attacker's own index once, the first time they add up to a quorum with the attacker."""
    brain = a.brain
    if brain is None:
        return None
    data = timeout.data
    validators = brain.validators
    index = validators.index_of.get(timeout.author)
    mine = validators.index_of.get(a.node_id)
    if index is None or mine is None or index == mine or data.epoch != brain.epoch:
        return None
    if not validators.verify_one(index, data, timeout.signature):
        return None
    seen = rounds.setdefault((data.epoch, data.round), _Round())
    for stale in [k for k in rounds if k[1] + 8 < data.round]:
        del rounds[stale]
    seen.entries[index] = (data.high_qc_round, timeout.signature)
    if seen.best_qc is None or timeout.high_qc.round > seen.best_qc.round:
        seen.best_qc = timeout.high_qc
    if seen.used or validators.power_of([*seen.entries, mine]) < validators.quorum_power:
        return None
    seen.used = True
    return seen, mine


def _tc(
    a: Attacker, timeout: TimeoutData, seen: _Round, mine: int, *, claim: int, qc: QuorumCertificate
) -> TimeoutCertificate | None:
    """A TC of the honest entries and the attacker's own, claiming `claim`, carrying `qc`."""
    epoch, round_ = timeout.epoch, timeout.round
    own = a.sign(TimeoutData(a.chain_id, epoch, round_, claim))
    entries = {**seen.entries, mine: (claim, own)}
    try:
        return TimeoutCertificate(
            epoch=epoch,
            round=round_,
            signatures=[TimeoutSignature(i, h, s) for i, (h, s) in sorted(entries.items())],
            high_qc=qc,
        )
    except ValueError:
        return None


class ForgeTc(Strategy):
    name = "forge-tc"

    def __init__(self) -> None:
        self._rounds: dict[tuple[int, int], _Round] = {}

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        if isinstance(message, Proposal | Timeout):
            return []  # its own proposals and timeouts never help the honest replicas
        return [(to, message)]

    def received(self, a: Attacker, sender: bytes, message: ConsensusMessage) -> list[Outgoing]:
        if not isinstance(message, Timeout) or a.brain is None:
            return []
        gathered = _gather(a, self._rounds, message)
        if gathered is None:
            return []
        seen, mine = gathered
        data = message.data
        # Claim a QC of the round before the TC's: no honest replica holds one (it would not
        # have timed out), so a TC that named it would make every honest voter refuse the
        # next leader's block. The claim needs a QC to go with it; the attacker makes one up.
        claimed = max(data.round - 1, 0)
        phantom = VoteData(a.chain_id, data.epoch, claimed, a.rng.randbytes(32), 1)
        fake_qc = QuorumCertificate(
            epoch=data.epoch,
            round=claimed,
            block_id=phantom.block_id,
            height=phantom.height,
            signatures=[SignerSignature(mine, a.sign(phantom))],
        )
        forged = _tc(a, data, seen, mine, claim=claimed, qc=fake_qc)
        if forged is None:
            return []
        high_qc = a.brain.tree.high_qc
        carrier_data = TimeoutData(a.chain_id, data.epoch, data.round, high_qc.round)
        carrier = Timeout(
            data=carrier_data,
            author=a.node_id,
            signature=a.sign(carrier_data),
            high_qc=high_qc,
            last_timeout_certificate=forged,
        )
        return [(None, carrier)]


class StaleQc(Strategy):
    """Keeps commits to itself, then proposes on a QC below the honest replicas' lock.

    As leader after a QC it aggregated (which may make a block final, for its own replica),
    it shows its proposal to nobody. It gathers the honest timeouts that follow into a TC of
    its own and, whenever it leads the next round, proposes with that TC on the most recent
    QC it ever saw below the TC's high QC, from its archive of blocks (a real attacker keeps
    everything it receives). The lock rule must make every honest replica refuse the block;
    without it, the honest replicas finalise a block that conflicts with the one the
    attacker's replica already holds a commit proof for.
    """

    name = "stale-qc"

    def __init__(self) -> None:
        self._blocks: dict[bytes, Block] = {}
        self._qcs: dict[bytes, QuorumCertificate] = {}
        self._timeouts: dict[tuple[int, int], _Round] = {}

    def _archive(self, a: Attacker, message: ConsensusMessage) -> None:
        blocks: list[Block] = []
        if isinstance(message, Proposal):
            blocks = [message.block]
        elif isinstance(message, BlockResponse):
            blocks = list(message.blocks)
        for block in blocks:
            self._blocks[block_id(a.suite, block.header)] = block
            justify = block.header.justify
            self._qcs[justify.block_id] = justify
        for archive in (self._blocks, self._qcs):
            while len(archive) > _ARCHIVED_MAX:
                del archive[next(iter(archive))]

    def received(self, a: Attacker, sender: bytes, message: ConsensusMessage) -> list[Outgoing]:
        self._archive(a, message)
        brain = a.brain
        if not isinstance(message, Timeout) or brain is None or brain.epoch != message.data.epoch:
            return []
        gathered = _gather(a, self._timeouts, message)
        if gathered is None:
            return []
        seen, mine = gathered
        data = message.data
        if seen.best_qc is None or brain.leaders.leader(data.round + 1) != a.node_id:
            return []
        # Its own entry claims no more than the honest ones: the QCs it keeps stay hidden.
        tc = _tc(a, data, seen, mine, claim=seen.best_qc.round, qc=seen.best_qc)
        template = brain.tree.get(brain.tree.high_qc.block_id)
        if tc is None or template is None:
            return []
        header = msgspec.structs.replace(
            template.header, round=tc.round + 1, author=a.node_id, timestamp_ms=a.now_ms
        )
        stale = self._stale(a, header, tc)
        return [] if stale is None else [(None, stale)]

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        if not isinstance(message, Proposal) or to is not None:
            return [(to, message)]
        self._archive(a, message)
        tc = message.timeout_certificate
        if tc is None:
            return []  # the QC it carries stays with the attacker
        stale = self._stale(a, message.block.header, tc)
        return [(to, message if stale is None else stale)]

    def _stale(self, a: Attacker, header: BlockHeader, tc: TimeoutCertificate) -> Proposal | None:
        """A signed proposal like `header` but on the most recent QC below the TC's."""
        candidates = [
            qc
            for qc in self._qcs.values()
            if qc.epoch == header.epoch
            and qc.round < tc.high_qc.round
            and qc.block_id in self._blocks
        ]
        if not candidates:
            return None
        qc = max(candidates, key=lambda q: q.round)
        parent = self._blocks[qc.block_id]
        payload = [b"stale:%d" % header.round]
        block = _rebuilt(
            a,
            header,
            payload,
            parent_id=qc.block_id,
            justify=qc,
            height=parent.header.height + 1,
            timestamp_ms=max(header.timestamp_ms, parent.header.timestamp_ms + 1),
            next_epoch=None,
        )
        return _signed(a, block, tc)


class Withhold(Strategy):
    name = "withhold"

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        if not isinstance(message, Proposal | Vote | Timeout):
            return [(to, message)]
        if to is not None:
            return [(to, message)] if a.rng.randrange(2) else []
        chosen, _ = _split(a, a.peers)
        return [(peer, message) for peer in chosen]


# When a `silent` validator goes quiet: a closed set (mypy checks every moment named).
SilentMoment = Literal["first_commit", "own_commit", "random"]


class Silent(Strategy):
    name = "silent"
    # In the order a seed draws from (a test checks they are `SilentMoment`'s).
    MOMENTS: ClassVar[tuple[SilentMoment, ...]] = ("first_commit", "own_commit", "random")

    def __init__(self, moment: SilentMoment, quiet_from_ms: int) -> None:
        self.moment = moment
        self._quiet_from_ms = quiet_from_ms
        self.quiet = False

    def outgoing(self, a: Attacker, to: bytes | None, message: ConsensusMessage) -> list[Outgoing]:
        if self.moment == "random" and a.now_ms >= self._quiet_from_ms:
            self.quiet = True
        return [] if self.quiet else [(to, message)]

    def acted(self, a: Attacker, action: Action) -> None:
        if not isinstance(action, Commit):
            return
        if self.moment == "first_commit":
            self.quiet = True
        elif self.moment == "own_commit":
            self.quiet = self.quiet or any(b.header.author == a.node_id for b in action.blocks)


class Flood(Strategy):
    name = "flood"

    def __init__(self) -> None:
        self._replays: list[ConsensusMessage] = []

    def received(self, a: Attacker, sender: bytes, message: ConsensusMessage) -> list[Outgoing]:
        if len(self._replays) < _REPLAYS_KEPT:
            self._replays.append(message)
        else:
            self._replays[a.rng.randrange(_REPLAYS_KEPT)] = message
        if a.rng.randrange(4) or not a.peers:
            return []
        target = a.rng.choice(a.peers)
        kind = a.rng.randrange(5)
        frame: Frame | None = None
        if kind == 0:
            frame = self._far_future_timeout(a)
        elif kind == 1:
            frame = a.rng.choice(self._replays)
        elif kind == 2:
            frame = _bad_signature(a, message)
        elif kind == 3:
            frame = _OVERSIZED
        else:
            frame = _malformed(a, message)
        return [] if frame is None else [(target, frame)]

    @staticmethod
    def _far_future_timeout(a: Attacker) -> Timeout | None:
        brain = a.brain
        if brain is None:
            return None
        high_qc = brain.tree.high_qc
        data = TimeoutData(a.chain_id, brain.epoch, brain.round + 1000, high_qc.round)
        return Timeout(data=data, author=a.node_id, signature=a.sign(data), high_qc=high_qc)


def _bad_signature(a: Attacker, message: ConsensusMessage) -> ConsensusMessage | None:
    if not isinstance(message, Vote | Timeout | Proposal):
        return None
    signature = bytearray(message.signature)
    signature[a.rng.randrange(len(signature))] ^= 1 << a.rng.randrange(8)
    return msgspec.structs.replace(message, signature=bytes(signature))


def _malformed(a: Attacker, message: ConsensusMessage) -> bytes:
    """Bytes no decoder may accept: a cut encoding, junk, or a valid prefix with junk after."""
    encoded = encode(message)
    choice = a.rng.randrange(3)
    if choice == 0 and len(encoded) > 1:
        return encoded[: a.rng.randrange(1, len(encoded))]
    if choice == 1:
        return a.rng.randbytes(a.rng.randint(1, 64))
    return encoded + a.rng.randbytes(a.rng.randint(1, 8))


STRATEGIES: Final = (TWINS, "equivocate", "forge-tc", "stale-qc", "withhold", "silent", "flood")


def make_strategy(name: str, rng: random.Random, quiet_by_ms: int) -> Strategy:
    """The strategy called `name` (not twins), its choices drawn from `rng`."""
    if name == "equivocate":
        return Equivocate()
    if name == "forge-tc":
        return ForgeTc()
    if name == "stale-qc":
        return StaleQc()
    if name == "withhold":
        return Withhold()
    if name == "silent":
        return Silent(rng.choice(Silent.MOMENTS), rng.randint(0, max(1, quiet_by_ms)))
    if name == "flood":
        return Flood()
    raise ValueError(f"unknown strategy {name!r}")
