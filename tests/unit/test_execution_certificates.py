"""Execution headers and certificates as values: the safety rules sign a header once a height,
an execution signature and a vote never stand for each other, the receipts root proves each
receipt and nothing else, a certificate is checked against its epoch's validators, and the
aggregator forms one at a quorum of matching valid votes, within its bounds."""

from __future__ import annotations

import msgspec
import pytest

from consortia.client.light import (
    LightClient,
    VerificationError,
    verify_certificate,
    verify_epoch_change,
)
from consortia.consensus.safety import Refusal, SafetyRules
from consortia.node.attestation import (
    AHEAD,
    BEHIND,
    UNKNOWN_EPOCH_MAX,
    Attestations,
    ExecutionDivergedError,
)
from consortia.types.consensus import (
    Block,
    CommitProof,
    EpochChangeResponse,
    EpochConfig,
    SafetyState,
    Validator,
    VoteData,
)
from consortia.types.encoding import decode, encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
    ReceiptEvent,
    ReceiptProof,
    TxReceipt,
    receipt_leaf,
    receipt_proof,
    receipts_root,
    verify_receipt_proof,
)
from consortia.types.network import ExecutionVote, WireMessage
from consortia.types.signing import SigningDomain, sign, verify
from tests.consensus_helpers import (
    CHAIN_ID,
    DOMAIN,
    SUITE,
    Key,
    make_block,
    make_cluster,
    make_header,
    make_keys,
    make_qc,
    make_replica,
    qc_stub,
)
from tests.node_helpers import make_genesis

CLUSTER = make_cluster(4)
KEYS = CLUSTER.keys
CONFIG = CLUSTER.config


def header(height: int = 1, *, root: int = 1, epoch: int = 0) -> ExecutionHeader:
    return ExecutionHeader(
        chain_id=CHAIN_ID,
        epoch=epoch,
        height=height,
        block_id=bytes([height % 256]) * 32,
        state_root=bytes([root]) * 32,
        receipts_root=bytes([7]) * 32,
    )


def vote(key: Key, head: ExecutionHeader, domain: SigningDomain = DOMAIN) -> ExecutionVote:
    return ExecutionVote(head, key.node_id, sign(SUITE, key.private_key, head, domain))


def rules(key: Key) -> SafetyRules:
    state = SafetyState(epoch=0, highest_vote_round=0, highest_qc=qc_stub(0))
    return SafetyRules(SUITE, key.private_key, CHAIN_ID, state, domain=DOMAIN)


def certificate(head: ExecutionHeader, keys: list[Key]) -> ExecutionCertificate:
    ordered = sorted(keys, key=lambda k: k.node_id)
    return ExecutionCertificate(
        head,
        [ExecutionSignature(k.node_id, sign(SUITE, k.private_key, head, DOMAIN)) for k in ordered],
    )


# ---------------------------------------------------------------------- signing


def test_the_safety_rules_sign_one_header_a_height_and_only_of_their_chain() -> None:
    """Each refusal is typed: the rule that refused and the header's height."""
    signer = rules(KEYS[0])
    first = signer.sign_execution(header(5))
    assert isinstance(first, bytes)
    assert verify(SUITE, KEYS[0].public_key, header(5), first, DOMAIN)
    # The same header again (a retransmission) is signed again; another one is refused.
    assert isinstance(signer.sign_execution(header(5)), bytes)
    again = signer.sign_execution(header(5, root=2))
    assert isinstance(again, Refusal)
    assert (again.rule, again.height) == ("execution_already_signed", 5)
    assert str(again) == "execution_already_signed: height 5"
    assert isinstance(signer.sign_execution(header(6, root=2)), bytes)
    other_chain = msgspec.structs.replace(header(7), chain_id="elsewhere")
    elsewhere = signer.sign_execution(other_chain)
    assert isinstance(elsewhere, Refusal)
    assert (elsewhere.rule, elsewhere.height) == ("execution_other_chain", 7)
    # A refused header is not remembered: height 7 of this chain is still signed.
    assert isinstance(signer.sign_execution(header(7)), bytes)


def test_the_replica_counts_execution_refusals_by_rule() -> None:
    """Setup: a replica asked to sign two different headers for one height, then one of
    another chain. Test: both refusals come back typed and are counted by rule, like the
    refusals of votes and timeouts; a signature is not counted."""
    replica = make_replica(CLUSTER, KEYS[0])
    assert isinstance(replica.sign_execution(header(4)), bytes)
    assert replica.counters.refused == {}
    refused = replica.sign_execution(header(4, root=3))
    assert isinstance(refused, Refusal) and refused.rule == "execution_already_signed"
    other_chain = msgspec.structs.replace(header(8), chain_id="elsewhere")
    refused = replica.sign_execution(other_chain)
    assert isinstance(refused, Refusal) and refused.rule == "execution_other_chain"
    assert replica.counters.refused == {
        "execution_already_signed": 1,
        "execution_other_chain": 1,
    }


def test_an_execution_signature_never_verifies_as_a_vote_nor_a_vote_as_one() -> None:
    key = KEYS[0]
    head = header(3)
    as_vote = VoteData(CHAIN_ID, 0, 3, head.block_id, 3)
    execution_signature = sign(SUITE, key.private_key, head, DOMAIN)
    vote_signature = sign(SUITE, key.private_key, as_vote, DOMAIN)
    assert verify(SUITE, key.public_key, head, execution_signature, DOMAIN)
    assert not verify(SUITE, key.public_key, as_vote, execution_signature, DOMAIN)
    assert not verify(SUITE, key.public_key, head, vote_signature, DOMAIN)
    # Nor on another chain sharing the keys.
    other = SigningDomain(SUITE.hash(b"another genesis"))
    assert not verify(SUITE, key.public_key, head, execution_signature, other)


def test_an_execution_vote_is_a_wire_message_with_one_encoding() -> None:
    message = vote(KEYS[1], header(2))
    assert decode(encode(message), WireMessage) == message


# ---------------------------------------------------------------------- receipts root


def receipts(count: int) -> list[bytes]:
    return [
        encode(
            TxReceipt(
                tx_id=bytes([i]) * 32,
                height=9,
                index=i,
                ok=i % 3 != 0,
                code="ok",
                message="",
                gas_used=100 + i,
                events=[ReceiptEvent("asset", "transferred", {"amount": i, "to": "bob"})],
                result={"n": i},
            )
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33])
def test_every_receipt_is_proven_at_its_index_and_nowhere_else(count: int) -> None:
    encoded = receipts(count)
    leaves = [receipt_leaf(SUITE, item) for item in encoded]
    root = receipts_root(SUITE, leaves)
    for index, item in enumerate(encoded):
        proof = receipt_proof(SUITE, leaves, index)
        assert decode(encode(proof), ReceiptProof) == proof
        assert verify_receipt_proof(SUITE, root, item, proof)
        # Another index, another count, a tampered receipt or sibling, another root: refused.
        for other in range(count):
            if other != index:
                moved = msgspec.structs.replace(proof, index=other)
                assert not verify_receipt_proof(SUITE, root, item, moved)
        for wrong_count in {count - 1, count + 1} - {0}:
            assert not verify_receipt_proof(
                SUITE, root, item, msgspec.structs.replace(proof, count=wrong_count)
            )
        assert not verify_receipt_proof(SUITE, root, item + b"\x00", proof)
        if proof.siblings:
            siblings = [bytes(32), *proof.siblings[1:]]
            tampered = msgspec.structs.replace(proof, siblings=siblings)
            assert not verify_receipt_proof(SUITE, root, item, tampered)
            shorter = msgspec.structs.replace(proof, siblings=proof.siblings[:-1])
            assert not verify_receipt_proof(SUITE, root, item, shorter)
        longer = msgspec.structs.replace(proof, siblings=[*proof.siblings, bytes(32)])
        assert not verify_receipt_proof(SUITE, root, item, longer)
        assert not verify_receipt_proof(SUITE, bytes(32), item, proof)


def test_the_receipts_root_commits_to_their_order_and_number() -> None:
    leaves = [receipt_leaf(SUITE, item) for item in receipts(4)]
    root = receipts_root(SUITE, leaves)
    assert receipts_root(SUITE, [leaves[1], leaves[0], *leaves[2:]]) != root
    assert receipts_root(SUITE, leaves[:3]) != root
    assert receipts_root(SUITE, []) != receipts_root(SUITE, [receipt_leaf(SUITE, b"")])
    with pytest.raises(IndexError):
        receipt_proof(SUITE, leaves, 4)


# ---------------------------------------------------------------------- certificates


def test_a_quorum_certificate_verifies_and_every_tampering_is_named() -> None:
    head = header(4)
    good = certificate(head, KEYS[:3])
    assert verify_certificate(SUITE, good, CONFIG, domain=DOMAIN, chain_id=CHAIN_ID) == head
    tampered = msgspec.structs.replace(
        good, header=msgspec.structs.replace(head, state_root=bytes(32))
    )
    cases = {
        "tampered header": tampered,
        "missing signatures": certificate(head, KEYS[:2]),
        "signer not in set": certificate(head, [*KEYS[:2], make_keys(1, "outsider")[0]]),
        "signature of another header": ExecutionCertificate(
            head,
            [
                *good.signatures[:2],
                ExecutionSignature(
                    good.signatures[2].node_id,
                    sign(
                        SUITE,
                        CLUSTER.key_of(good.signatures[2].node_id).private_key,
                        header(5),
                        DOMAIN,
                    ),
                ),
            ],
        ),
    }
    for name, bad in cases.items():
        with pytest.raises(VerificationError) as error:
            verify_certificate(SUITE, bad, CONFIG, domain=DOMAIN)
        assert error.value.code == "verification_failed", name
    # The right signatures against another validator set, or of another epoch's set.
    other_set = EpochConfig(
        epoch=0,
        validators=[Validator(k.node_id, k.public_key, 1) for k in make_keys(4, "other")],
    )
    with pytest.raises(VerificationError, match="not a validator"):
        verify_certificate(SUITE, good, other_set, domain=DOMAIN)
    with pytest.raises(VerificationError, match="epoch"):
        verify_certificate(SUITE, good, msgspec.structs.replace(CONFIG, epoch=1), domain=DOMAIN)
    with pytest.raises(VerificationError, match="chain"):
        verify_certificate(SUITE, good, CONFIG, domain=DOMAIN, chain_id="elsewhere")
    with pytest.raises(VerificationError):
        verify_certificate(SUITE, good, CONFIG, domain=SigningDomain(bytes(32)))


def test_a_certificate_lists_each_signer_once_in_order() -> None:
    good = certificate(header(4), KEYS[:3])
    with pytest.raises(ValueError, match="sorted"):
        ExecutionCertificate(good.header, [good.signatures[0], *good.signatures[:2]])
    with pytest.raises(ValueError, match="sorted"):
        ExecutionCertificate(good.header, list(reversed(good.signatures)))


# ---------------------------------------------------------------------- aggregation


def aggregator(height: int = 0) -> Attestations:
    return Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG], height=height)


def test_a_quorum_of_matching_votes_forms_one_certificate() -> None:
    attestations = aggregator()
    head = header(1)
    assert attestations.executed(head) == []
    assert attestations.add(vote(KEYS[0], head), KEYS[0].node_id) == []
    assert attestations.add(vote(KEYS[1], header(1, root=9)), KEYS[1].node_id) == []
    assert attestations.add(vote(KEYS[2], head), KEYS[2].node_id) == []
    formed = attestations.add(vote(KEYS[3], head), KEYS[3].node_id)
    assert len(formed) == 1 and formed[0].header == head
    assert [s.node_id for s in formed[0].signatures] == sorted(
        [KEYS[0].node_id, KEYS[2].node_id, KEYS[3].node_id]
    )
    verify_certificate(SUITE, formed[0], CONFIG, domain=DOMAIN)
    # Late votes for a certified height form nothing more.
    assert attestations.add(vote(KEYS[1], head), KEYS[1].node_id) == []
    assert attestations.counters.dropped["certified"] == 1
    assert attestations.check() is None


def test_duplicates_forgeries_and_strangers_count_for_nothing() -> None:
    attestations = aggregator()
    head = header(2)
    attestations.executed(header(1))
    first = vote(KEYS[0], head)
    assert attestations.add(first, KEYS[0].node_id) == []
    assert attestations.add(first, KEYS[0].node_id) == []  # the same vote twice
    assert attestations.add(vote(KEYS[0], header(2, root=3)), KEYS[0].node_id) == []
    forged = msgspec.structs.replace(vote(KEYS[1], head), signature=bytes(64))
    assert attestations.add(forged, KEYS[1].node_id) == []
    relayed = vote(KEYS[2], head)
    assert attestations.add(relayed, KEYS[3].node_id) == []  # not from its signer
    outsider = make_keys(1, "outsider")[0]
    assert attestations.add(vote(outsider, head), outsider.node_id) == []
    other_chain = vote(KEYS[1], msgspec.structs.replace(head, chain_id="elsewhere"))
    assert attestations.add(other_chain, KEYS[1].node_id) == []
    wrong_domain = vote(KEYS[1], head, SigningDomain(bytes(32)))
    assert attestations.add(wrong_domain, KEYS[1].node_id) == []
    dropped = attestations.counters.dropped
    assert dropped == {
        "duplicate": 1,
        "conflicting": 1,
        "bad_signature": 2,
        "not_from_signer": 1,
        "unknown_signer": 1,
        "wrong_chain": 1,
    }
    # Only KEYS[0]'s vote counts: two more honest ones make the quorum.
    assert attestations.add(vote(KEYS[1], head), KEYS[1].node_id) == []
    attestations.executed(head)
    assert len(attestations.add(vote(KEYS[2], head), KEYS[2].node_id)) == 1


def test_votes_of_an_unknown_epoch_wait_for_its_validators_and_old_epochs_are_dropped() -> None:
    attestations = aggregator()
    next_config = msgspec.structs.replace(CONFIG, epoch=1)
    head = header(3, epoch=1)
    attestations.executed(head)
    for key in KEYS[:3]:
        assert attestations.add(vote(key, head), key.node_id) == []
    formed = attestations.add_epoch(next_config)
    assert len(formed) == 1 and formed[0].header == head
    # A vote claiming an epoch below the known ones (a wrong epoch) is dropped.
    later = Attestations(SUITE, DOMAIN, CHAIN_ID, [next_config], height=3)
    assert later.add(vote(KEYS[0], header(4, epoch=0)), KEYS[0].node_id) == []
    assert later.counters.dropped["unknown_epoch"] == 1
    # Only the next epoch's votes wait; those of epochs further ahead are dropped.
    ahead = aggregator()
    assert ahead.add(vote(KEYS[0], header(5, epoch=9)), KEYS[0].node_id) == []
    assert ahead.counters.dropped["unknown_epoch"] == 1 and not ahead._unknown
    # The waiting room is bounded, in all and per sender.
    crowded = aggregator()
    far = header(5, epoch=1)
    per_sender = AHEAD + BEHIND + 1
    for _ in range(per_sender + 10):
        crowded.add(vote(KEYS[0], far), KEYS[0].node_id)
    assert crowded.counters.dropped["unknown_epoch"] == 10
    for key in KEYS[1:]:
        for _ in range(per_sender):
            crowded.add(vote(key, far), key.node_id)
    assert len(crowded._unknown) == min(UNKNOWN_EPOCH_MAX, 4 * per_sender)
    assert crowded.check() is None


def test_votes_outside_the_window_are_dropped_and_old_heights_pruned() -> None:
    attestations = aggregator(height=100)
    assert attestations.add(vote(KEYS[0], header(100 + AHEAD + 1)), KEYS[0].node_id) == []
    assert attestations.add(vote(KEYS[0], header(100 - BEHIND - 1)), KEYS[0].node_id) == []
    assert attestations.counters.dropped["outside_window"] == 2
    assert attestations.add(vote(KEYS[0], header(100 + AHEAD)), KEYS[0].node_id) == []
    assert attestations.counters.votes_accepted == 1
    # The node moves on: the vote it held falls out of the window and is forgotten.
    attestations.executed(header(100 + AHEAD + BEHIND + 1))
    assert attestations.check() is None
    assert attestations._votes == 0


def test_a_quorum_certifying_another_header_than_ours_is_divergence() -> None:
    ours, theirs = header(6), header(6, root=42)
    # The quorum first, then this node's execution...
    early = aggregator(height=5)
    for key in KEYS[:3]:
        assert early.add(vote(key, theirs), key.node_id) == []
    with pytest.raises(ExecutionDivergedError, match="diverged") as error:
        early.executed(ours)
    assert error.value.code == "execution_diverged"
    # ...or this node's execution first, then the quorum.
    late = aggregator(height=5)
    late.executed(ours)
    late.add(vote(KEYS[0], theirs), KEYS[0].node_id)
    late.add(vote(KEYS[1], theirs), KEYS[1].node_id)
    with pytest.raises(ExecutionDivergedError):
        late.add(vote(KEYS[2], theirs), KEYS[2].node_id)


# ---------------------------------------------------------------------- epoch changes


def epoch_change(signers: list[Key]) -> tuple[EpochChangeResponse, EpochConfig]:
    """Epoch 0 ends at block 1 (naming epoch 1's set), made final by block 2's QC."""
    following = EpochConfig(
        epoch=1, validators=[Validator(k.node_id, k.public_key, 1) for k in make_keys(5, "e1")]
    )
    ending_header = make_header(
        round_=1,
        height=1,
        parent_id=CLUSTER.genesis_id,
        justify=CLUSTER.root_qc,
        author=KEYS[0].node_id,
        next_epoch=following,
    )
    ending = Block(ending_header, [])
    child = make_block(ending, make_qc(CLUSTER, ending, KEYS[:3]), round_=2, author=KEYS[1].node_id)
    proof = CommitProof(headers=[child.header], qc=make_qc(CLUSTER, child, signers))
    return EpochChangeResponse(ending=ending_header, proof=proof), following


def test_a_light_client_learns_the_next_validator_set_only_from_a_valid_epoch_proof() -> None:
    response, following = epoch_change(KEYS[:3])
    assert verify_epoch_change(SUITE, DOMAIN, CHAIN_ID, response, CONFIG) == following
    light = LightClient(make_genesis(4))
    # Point it at the test cluster's chain (its genesis set and signing domain).
    light.chain_id, light.domain = CHAIN_ID, DOMAIN
    light._sets = {0: CONFIG}
    assert light.needs(1) == 0 and light.needs(0) is None
    assert light.learn_epoch(encode(response)) == following
    assert light.needs(1) is None and light.validator_set(1) == following
    # A certificate of epoch 1 is now checked against epoch 1's set.
    e1_keys = make_keys(5, "e1")
    head = header(3, epoch=1)
    good = ExecutionCertificate(
        head,
        [
            ExecutionSignature(k.node_id, sign(SUITE, k.private_key, head, DOMAIN))
            for k in e1_keys[:4]
        ],
    )
    assert light.verify_certificate(good) == head
    with pytest.raises(VerificationError, match="not a validator"):
        light.verify_certificate(certificate(head, KEYS[:3]))


def test_forged_epoch_proofs_are_refused() -> None:
    response, _ = epoch_change(KEYS[:2])  # not a quorum
    with pytest.raises(VerificationError, match="quorum"):
        verify_epoch_change(SUITE, DOMAIN, CHAIN_ID, response, CONFIG)
    good, following = epoch_change(KEYS[:3])
    swapped = msgspec.structs.replace(
        good.ending, next_epoch=msgspec.structs.replace(following, validators=CONFIG.validators)
    )
    with pytest.raises(VerificationError, match="descend"):
        verify_epoch_change(
            SUITE, DOMAIN, CHAIN_ID, msgspec.structs.replace(good, ending=swapped), CONFIG
        )
    with pytest.raises(VerificationError):
        verify_epoch_change(SUITE, DOMAIN, CHAIN_ID, good, msgspec.structs.replace(CONFIG, epoch=1))
    light = LightClient(make_genesis(4))
    with pytest.raises(VerificationError, match="canonical"):
        light.learn_epoch(b"\x00not an epoch proof")
