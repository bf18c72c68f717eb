"""Replica defences against a Byzantine peer, each found by an adversarial review.

Every test here failed against the consensus core before its fix: forged payloads accepted
through block fetching, equivocating proposals filling the block tree, any peer's junk
BlockResponse cancelling a fetch, far-ahead timeouts dropped before their certificates were
read, and the payload's Merkle root computed before the size check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from consortia.consensus import proposals as proposals_module
from consortia.consensus.config import Params
from consortia.consensus.events import (
    Action,
    Broadcast,
    MessageReceived,
    PayloadReady,
    Persist,
    PersistDone,
    Send,
    Start,
    TimerFired,
)
from consortia.consensus.replica import Replica
from consortia.types.consensus import (
    BLOCK_REQUEST_COUNT_MAX,
    Block,
    BlockRequest,
    BlockResponse,
    ConsensusMessage,
    Proposal,
    Timeout,
)
from consortia.types.signing import block_id, merkle_root
from tests.consensus_helpers import (
    SUITE,
    Key,
    make_block,
    make_cluster,
    make_proposal,
    make_qc,
    make_replica,
    make_tc,
    make_timeout,
    of_type,
)

CLUSTER = make_cluster(4)


@dataclass(frozen=True, slots=True)
class Roles:
    leader1: Key
    leader2: Key
    me: Key  # leads neither round 1 nor round 2
    stranger: Key  # a validator that is neither `me` nor round 2's leader


def _roles() -> Roles:
    election = CLUSTER.leader_election()
    leader1 = CLUSTER.key_of(election.leader(1))
    leader2 = CLUSTER.key_of(election.leader(2))
    me = next(k for k in CLUSTER.keys if k not in (leader1, leader2))
    stranger = next(k for k in CLUSTER.keys if k not in (leader2, me))
    return Roles(leader1, leader2, me, stranger)


ROLES = _roles()


def started(key: Key = ROLES.me, **kwargs: Any) -> Replica:
    replica = make_replica(CLUSTER, key, **kwargs)
    replica.handle(Start(0))
    assert replica.round == 1
    return replica


def receive(replica: Replica, sender: Key, message: ConsensusMessage, now: int = 1) -> list[Action]:
    return replica.handle(MessageReceived(now, sender.node_id, message))


def block1(payload: list[bytes] | None = None, **kwargs: Any) -> Block:
    """A block of round 1 on genesis, by round 1's leader."""
    return make_block(
        CLUSTER.genesis,
        CLUSTER.root_qc,
        round_=1,
        author=ROLES.leader1.node_id,
        payload=[b"tx-1"] if payload is None else payload,
        **kwargs,
    )


def block_requests(actions: list[Action]) -> list[tuple[bytes, BlockRequest]]:
    return [
        (send.to, send.message)
        for send in of_type(actions, Send)
        if isinstance(send.message, BlockRequest)
    ]


@dataclass(slots=True)
class Fetching:
    """A replica in round 2 that fetches block 1 from round 2's leader."""

    replica: Replica
    block1: Block
    block1_id: bytes
    block2_id: bytes


def fetching_block1() -> Fetching:
    """`me` receives round 2's proposal (justified by a QC of block 1) without block 1: it
    buffers the proposal and asks round 2's leader for block 1."""
    replica = started()
    first = block1()
    first_id = block_id(SUITE, first.header)
    qc1 = make_qc(CLUSTER, first, [k for k in CLUSTER.keys if k != ROLES.me])
    second = make_block(first, qc1, round_=2, author=ROLES.leader2.node_id, payload=[b"tx-2"])
    actions = receive(replica, ROLES.leader2, make_proposal(second, ROLES.leader2))
    assert replica.round == 2
    assert block_requests(actions) == [
        (ROLES.leader2.node_id, BlockRequest(0, first_id, BLOCK_REQUEST_COUNT_MAX))
    ]
    assert first_id in replica.sync.fetches
    assert first_id not in replica.tree
    assert replica.counters.dropped == {}
    return Fetching(replica, first, first_id, block_id(SUITE, second.header))


def forged(block: Block) -> Block:
    """The same header (so the same id) with a payload it does not commit to."""
    return Block(header=block.header, payload=[b"FORGED:" + item for item in block.payload])


# ------------------------------------------------------------------ 1. forged payload in a fetch


def test_fetched_block_with_forged_payload_is_refused_and_fetch_stays_open() -> None:
    """Setup: a replica fetches block 1 (whose QC it saw in round 2's proposal) from round 2's
    leader. Test: that peer answers with block 1's header but a forged payload; the answer is
    dropped as `bad_block_response`, nothing is inserted, the fetch stays open, and the
    honest answer that follows connects block 1 and the buffered proposal."""
    f = fetching_block1()
    bad = forged(f.block1)
    assert block_id(SUITE, bad.header) == f.block1_id
    assert merkle_root(SUITE, bad.payload) != bad.header.payload_root

    out = receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, [bad]))
    assert f.replica.counters.dropped == {"bad_block_response": 1}
    assert f.block1_id not in f.replica.tree
    assert len(f.replica.tree.blocks) == 1
    assert f.block1_id in f.replica.sync.fetches
    assert not block_requests(out)

    receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, [f.block1]))
    assert f.block1_id in f.replica.tree
    assert f.replica.tree.get(f.block1_id) == f.block1
    assert f.replica.tree.get(f.block1_id).payload == [b"tx-1"]  # type: ignore[union-attr]
    assert f.block2_id in f.replica.tree  # the buffered proposal was accepted
    assert f.block1_id not in f.replica.sync.fetches
    assert f.replica.counters.dropped == {"bad_block_response": 1}


# ------------------------------------------------------------------ 2. equivocating proposals


def test_second_proposal_of_a_round_is_dropped_as_equivocation() -> None:
    """Setup: a replica in round 1 accepts round 1's proposal. Test: a second, different,
    validly signed proposal by the same leader for round 1 is dropped as
    `equivocating_proposal` and is not inserted; re-delivering the first is not equivocation."""
    replica = started()
    first = block1([b"tx-1"])
    second = block1([b"tx-other"])
    receive(replica, ROLES.leader1, make_proposal(first, ROLES.leader1))
    assert block_id(SUITE, first.header) in replica.tree
    assert replica.counters.dropped == {}

    receive(replica, ROLES.leader1, make_proposal(second, ROLES.leader1))
    assert replica.counters.dropped == {"equivocating_proposal": 1}
    assert block_id(SUITE, second.header) not in replica.tree
    assert len(replica.tree.blocks) == 2  # genesis and the first proposal


def test_flood_of_equivocating_proposals_inserts_at_most_one_block() -> None:
    """Setup: a fresh replica in round 1. Test: round 1's leader sends 300 distinct, validly
    signed proposals for round 1 (differing only in timestamp); the tree grows by one block
    at most, and every other proposal is counted as `equivocating_proposal`."""
    replica = started()
    flood = 300
    for k in range(flood):
        block = block1(timestamp_ms=1 + k)
        receive(replica, ROLES.leader1, make_proposal(block, ROLES.leader1))
    assert len(replica.tree.blocks) == 2  # genesis and the first proposal only
    assert replica.counters.dropped == {"equivocating_proposal": flood - 1}


# ------------------------------------------------------------------ 3. who may answer a fetch


def test_block_response_from_a_peer_not_asked_is_unsolicited_and_keeps_the_fetch() -> None:
    """Setup: a replica fetches block 1 from round 2's leader. Test: another validator sends a
    BlockResponse for block 1, first with the real block and then with junk; both are dropped
    as `unsolicited_blocks`, neither is inserted, and the fetch stays open; the asked peer's
    honest answer then completes it."""
    f = fetching_block1()
    receive(f.replica, ROLES.stranger, BlockResponse(f.block1_id, [f.block1]))
    junk = Block(header=CLUSTER.genesis.header, payload=[])
    receive(f.replica, ROLES.stranger, BlockResponse(f.block1_id, [junk]))
    assert f.replica.counters.dropped == {"unsolicited_blocks": 2}
    assert f.block1_id not in f.replica.tree
    assert f.block1_id in f.replica.sync.fetches
    assert f.replica.sync.fetches[f.block1_id].peer == ROLES.leader2.node_id

    receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, [f.block1]))
    assert f.block1_id in f.replica.tree
    assert f.block2_id in f.replica.tree
    assert f.block1_id not in f.replica.sync.fetches


def test_forged_block_response_from_the_asked_peer_does_not_cancel_the_fetch() -> None:
    """Setup: a replica fetches block 1 from round 2's leader. Test: that peer first answers
    with a block whose hash is not the one asked for (junk), then with an empty answer; the
    junk is dropped as `bad_block_response`, the empty answer as `empty_block_response`, and
    the fetch survives both, so the honest answer that follows still completes it."""
    f = fetching_block1()
    junk = Block(header=CLUSTER.genesis.header, payload=[])
    receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, [junk]))
    assert f.replica.counters.dropped == {"bad_block_response": 1}
    assert f.block1_id in f.replica.sync.fetches
    receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, []))
    assert f.replica.counters.dropped == {"bad_block_response": 1, "empty_block_response": 1}
    assert f.block1_id in f.replica.sync.fetches
    assert f.block1_id not in f.replica.tree

    receive(f.replica, ROLES.leader2, BlockResponse(f.block1_id, [f.block1]))
    assert f.block1_id in f.replica.tree
    assert f.block2_id in f.replica.tree
    assert f.block1_id not in f.replica.sync.fetches
    assert "unsolicited_blocks" not in f.replica.counters.dropped


# ------------------------------------------------------------------ 4. lagging replica catches up


def test_far_ahead_timeout_still_delivers_its_timeout_certificate() -> None:
    """Setup: a replica in round 1; the others are in round 30, entered through a TC of
    round 29. Test: a timeout of round 30 (far beyond rounds_ahead_max) carrying that TC
    moves the replica to round 30 with the TC as its last TC."""
    replica = started()
    ahead = 30
    assert ahead > 1 + replica.params.rounds_ahead_max
    sender = ROLES.stranger
    signers = [(k, 0) for k in CLUSTER.keys if k != ROLES.me]
    tc = make_tc(CLUSTER, ahead - 1, signers)
    receive(replica, sender, make_timeout(sender, ahead, CLUSTER.root_qc, tc))
    assert replica.round == ahead
    assert replica.last_tc == tc
    assert "timeout_round_out_of_range" not in replica.counters.dropped


def test_far_ahead_timeout_still_delivers_its_high_qc() -> None:
    """Setup: a replica in round 1; the others hold a QC of round 15 (for a block this
    replica never saw). Test: a timeout of round 40 carrying that QC moves the replica to
    round 16, raises its high QC, and starts a fetch of the certified block from the sender."""
    replica = started()
    sender = ROLES.stranger
    missed = make_block(CLUSTER.genesis, CLUSTER.root_qc, round_=15, author=sender.node_id)
    qc = make_qc(CLUSTER, missed, [k for k in CLUSTER.keys if k != ROLES.me])
    ahead = 40
    assert ahead > 16 + replica.params.rounds_ahead_max
    actions = receive(replica, sender, make_timeout(sender, ahead, qc))
    assert replica.round == 16
    assert replica.tree.high_qc == qc
    missed_id = block_id(SUITE, missed.header)
    assert [(to, req.block_id) for to, req in block_requests(actions)] == [
        (sender.node_id, missed_id)
    ]
    # The timeout's own round is still too far ahead to be buffered.
    assert replica.counters.dropped == {"timeout_round_out_of_range": 1}


# ------------------------------------------------------------------ 5. size before Merkle root


def test_oversized_proposal_with_bad_root_is_dropped_as_oversized() -> None:
    """Setup: a replica with block_bytes_max = 16, in round 1. Test: round 1's leader proposes
    a block whose 17-byte payload also disagrees with its payload_root; it is dropped as
    `oversized_block`, not `bad_payload_root`, and nothing is inserted."""
    replica = started(params=Params(block_bytes_max=16))
    block = block1([b"x" * 17], payload_root=merkle_root(SUITE, []))
    receive(replica, ROLES.leader1, make_proposal(block, ROLES.leader1))
    assert replica.counters.dropped == {"oversized_block": 1}
    assert len(replica.tree.blocks) == 1


def test_oversized_proposal_is_refused_without_hashing_its_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Setup: a replica with block_bytes_max = 16, in round 1, with the replica's merkle_root
    counted. Test: an oversized proposal (with a correct payload_root) is dropped as
    `oversized_block` before any Merkle root is computed over its payload."""
    replica = started(params=Params(block_bytes_max=16))
    block = block1([b"y" * 9, b"z" * 9])
    proposal: Proposal = make_proposal(block, ROLES.leader1)
    calls: list[int] = []
    real = proposals_module.merkle_root

    def counting(suite: Any, items: list[bytes]) -> bytes:
        calls.append(len(items))
        return real(suite, items)

    monkeypatch.setattr(proposals_module, "merkle_root", counting)
    receive(replica, ROLES.leader1, proposal)
    assert replica.counters.dropped == {"oversized_block": 1}
    assert calls == []
    assert len(replica.tree.blocks) == 1


# ------------------------------------------------------------------ 6. the second review


def test_a_timeout_certificate_claiming_a_qc_that_does_not_exist_is_refused() -> None:
    """Regression (review): one Byzantine validator stopped the chain by completing 2f honest
    timeouts of round r with its own entry claiming a high QC of round r, a QC nobody holds;
    every honest voter then refused the next leader's block. Setup: a replica in round 1 and
    such a TC of round 1, carrying a made-up QC of round 1 for the claim. Test: the carrier
    timeout is dropped as a bad certificate; the replica neither adopts the TC nor moves."""
    replica = started()
    attacker = ROLES.stranger
    honest = [k for k in CLUSTER.keys if k not in (attacker, ROLES.me)]
    phantom = block1([b"never proposed"])
    fake_qc = make_qc(CLUSTER, phantom, [attacker])  # one signature: not a quorum
    forged = make_tc(CLUSTER, 1, [*((k, 0) for k in honest), (attacker, 1)], high_qc=fake_qc)
    actions = receive(replica, attacker, make_timeout(attacker, 1, CLUSTER.root_qc, forged))
    assert replica.counters.dropped.get("bad_certificate") == 1
    assert replica.round == 1 and replica.last_tc is None
    assert not of_type(actions, Send)


def test_a_timeout_certificate_carries_and_hands_over_the_highest_qc() -> None:
    """Setup: a replica that saw block 1 certified only inside one peer's timeout. Test: the
    TC it aggregates carries that QC (the highest signed round), and a replica that adopts
    the TC adopts its QC."""
    first = block1()
    qc1 = make_qc(CLUSTER, first, CLUSTER.keys[:3])
    aggregator = started(ROLES.leader2)
    others = [k for k in CLUSTER.keys if k != ROLES.leader2]
    timeouts = [
        make_timeout(others[0], 2, qc1),
        make_timeout(others[1], 2, CLUSTER.root_qc),
        make_timeout(others[2], 2, CLUSTER.root_qc),
    ]
    for key, timeout in zip(others, timeouts, strict=True):
        receive(aggregator, key, timeout)
    tc = aggregator.last_tc
    assert tc is not None and tc.round == 2 and tc.high_qc == qc1
    follower = started()
    sender = ROLES.stranger
    receive(follower, sender, make_timeout(sender, 3, CLUSTER.root_qc, tc))
    assert follower.tree.high_qc == qc1
    assert follower.round == 3 and follower.last_tc == tc


def test_a_negative_signer_index_never_counts_a_signature_twice() -> None:
    """Regression (review): a QC built in memory (not decoded) with indexes i - n and i made
    one signature count twice. Test: such a QC, with one real signer, does not verify."""
    replica = started()
    validators = replica.validators
    first = block1()
    signer = CLUSTER.keys[0]
    single = make_qc(CLUSTER, first, [signer])
    entry = single.signatures[0]
    n = len(validators.validators)
    aliased = type(single)(
        epoch=single.epoch,
        round=single.round,
        block_id=single.block_id,
        height=single.height,
        signatures=[
            type(entry)(entry.index - 2 * n, entry.signature),
            type(entry)(entry.index - n, entry.signature),
            entry,
        ],
    )
    assert not validators.verify_qc(aliased)


def test_a_restarted_replica_carries_its_last_commit_certificate() -> None:
    """Regression (review, seed 183): the QC that made the last commit final was lost on
    restart, so a stalled cluster never learnt this replica's commits and disagreed on
    leaders for ever. Setup: a replica built with the commit proof its driver kept. Test:
    its timeouts carry it."""
    first = block1()
    proof = make_qc(CLUSTER, first, CLUSTER.keys[:3])
    replica = started(commit_proof=proof)
    assert replica.high_commit_qc == proof
    actions = replica.handle(TimerFired(1000, 0, 1))
    timeouts = [p.state for p in of_type(actions, Persist)]
    assert timeouts
    released = replica.handle(PersistDone(1000, of_type(actions, Persist)[0].sequence))
    sent = [b.message for b in of_type(released, Broadcast)]
    assert [m.high_commit_qc for m in sent if isinstance(m, Timeout)] == [proof]


def test_a_leader_never_signs_a_second_proposal_for_a_round_after_restarting() -> None:
    """Regression (review): honest leaders signed two different proposals for one round
    after a restart. Setup: round 1's leader proposes, its durable state is kept, it
    restarts in round 1 and is offered another payload. Test: nothing is proposed; the
    refusal is counted by rule."""
    leader = started(ROLES.leader1)
    actions = leader.handle(PayloadReady(1, 0, 1, [b"first"]))
    persisted = of_type(actions, Persist)[-1].state
    assert persisted.highest_proposal_round == 1
    restarted = started(ROLES.leader1, safety_state=persisted)
    again = restarted.handle(PayloadReady(2, 0, 1, [b"second"]))
    assert not of_type(again, Persist) and not of_type(again, Broadcast)
    assert restarted.counters.dropped == {"unsafe_to_propose": 1}
    assert restarted.counters.refused == {"already_proposed_in_round": 1}
