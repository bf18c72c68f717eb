"""Domain separation of signatures and hashes: what is signed for one purpose or chain is never
valid for another, and Merkle leaves, inner nodes and block ids cannot stand in for each other.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consortia.crypto import SUITE_NAMES, Suite, suite
from consortia.errors import DecodeError
from consortia.types.consensus import (
    BlockHeader,
    EpochConfig,
    ProposalData,
    QuorumCertificate,
    SignerSignature,
    TimeoutData,
    Validator,
    VoteData,
)
from consortia.types.encoding import decode, encode
from consortia.types.signing import (
    BLOCK_HASH_DOMAIN,
    LEAF_HASH_DOMAIN,
    NODE_HASH_DOMAIN,
    SIGNING_DOMAIN,
    TX_ID_DOMAIN,
    SigningDomain,
    block_id,
    merkle_root,
    sign,
    transaction_id,
    verify,
)
from consortia.types.transaction import Transaction, TransactionBody
from tests.strategies import (
    block_headers,
    chain_ids,
    epochs,
    hashes,
    heights,
    rounds,
    signables,
    transaction_bodies,
    vote_data,
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Signing with the gm suite costs about a millisecond: fewer examples where keys are used.
SIGNING = settings(PROPERTY, max_examples=15)

ALL_SUITES = [suite(name) for name in SUITE_NAMES]


@functools.cache
def _keypair(name: str) -> tuple[bytes, bytes]:
    return suite(name).generate_keypair()


DOMAIN = SigningDomain(bytes(range(32)))
signing_bytes = DOMAIN.signing_bytes


@functools.cache
def _other_keypair(name: str) -> tuple[bytes, bytes]:
    return suite(name).generate_keypair()


# --- Signing bytes --------------------------------------------------------------------------


@PROPERTY
@given(payload=signables())
def test_signing_bytes_are_the_domain_then_the_canonical_encoding(payload: Any) -> None:
    data = signing_bytes(payload)
    assert data == SIGNING_DOMAIN + DOMAIN.genesis_hash + encode(payload)
    assert decode(data[len(SIGNING_DOMAIN) + 32 :], type(payload)) == payload


@PROPERTY
@given(
    chain_id=chain_ids(),
    epoch=epochs(),
    round_=rounds(),
    number=heights(),
    block=hashes(),
)
def test_vote_timeout_and_proposal_with_the_same_numbers_sign_differently(
    chain_id: str, epoch: int, round_: int, number: int, block: bytes
) -> None:
    vote = VoteData(chain_id, epoch, round_, block, number)
    timeout = TimeoutData(chain_id, epoch, round_, number)
    proposal = ProposalData(chain_id, epoch, round_, block)
    signed = {signing_bytes(vote), signing_bytes(timeout), signing_bytes(proposal)}
    assert len(signed) == 3
    # And none of them parses as the others: the tag differs, not only the length.
    body = signing_bytes(vote)[len(SIGNING_DOMAIN) + 32 :]
    for other in (TimeoutData, ProposalData, TransactionBody):
        with pytest.raises(DecodeError):
            decode(body, other)


@PROPERTY
@given(vote=vote_data(), other_chain=chain_ids())
def test_the_same_vote_on_two_chains_signs_differently(vote: VoteData, other_chain: str) -> None:
    assume(other_chain != vote.chain_id)
    moved = msgspec.structs.replace(vote, chain_id=other_chain)
    assert signing_bytes(moved) != signing_bytes(vote)


@PROPERTY
@given(body=transaction_bodies(), other_chain=chain_ids())
def test_the_same_transaction_on_two_chains_signs_differently(
    body: TransactionBody, other_chain: str
) -> None:
    assume(other_chain != body.chain_id)
    moved = msgspec.structs.replace(body, chain_id=other_chain)
    assert signing_bytes(moved) != signing_bytes(body)


# --- Sign and verify, both suites -----------------------------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
@SIGNING
@given(vote=vote_data(), other_chain=chain_ids())
def test_vote_signature_verifies_only_for_that_vote(
    name: str, vote: VoteData, other_chain: str
) -> None:
    assume(other_chain != vote.chain_id)
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    signature = sign(chosen, private_key, vote, DOMAIN)
    assert len(signature) == chosen.signature_size
    assert verify(chosen, public_key, vote, signature, DOMAIN)
    # Another payload type with the same numbers.
    timeout = TimeoutData(vote.chain_id, vote.epoch, vote.round, vote.height)
    assert not verify(chosen, public_key, timeout, signature, DOMAIN)
    proposal = ProposalData(vote.chain_id, vote.epoch, vote.round, vote.block_id)
    assert not verify(chosen, public_key, proposal, signature, DOMAIN)
    # The same vote on another chain.
    moved = msgspec.structs.replace(vote, chain_id=other_chain)
    assert not verify(chosen, public_key, moved, signature, DOMAIN)
    # Another signer's key.
    assert not verify(chosen, _other_keypair(name)[1], vote, signature, DOMAIN)


@pytest.mark.parametrize("name", SUITE_NAMES)
@SIGNING
@given(payload=signables(), other_chain=chain_ids())
def test_any_signable_verifies_only_on_its_chain(name: str, payload: Any, other_chain: str) -> None:
    assume(other_chain != payload.chain_id)
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    signature = sign(chosen, private_key, payload, DOMAIN)
    assert verify(chosen, public_key, payload, signature, DOMAIN)
    moved = msgspec.structs.replace(payload, chain_id=other_chain)
    assert not verify(chosen, public_key, moved, signature, DOMAIN)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_timeout_signature_does_not_verify_as_a_vote(name: str) -> None:
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    timeout = TimeoutData("testnet", 3, 7, 6)
    signature = sign(chosen, private_key, timeout, DOMAIN)
    assert verify(chosen, public_key, timeout, signature, DOMAIN)
    vote = VoteData("testnet", 3, 7, bytes(32), 6)
    assert not verify(chosen, public_key, vote, signature, DOMAIN)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_signature_without_the_domain_does_not_verify(name: str) -> None:
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    vote = VoteData("testnet", 1, 2, bytes(32), 3)
    bare = chosen.sign(private_key, encode(vote))
    assert chosen.verify(public_key, encode(vote), bare)
    assert not verify(chosen, public_key, vote, bare, DOMAIN)


def test_a_signature_of_one_suite_does_not_verify_under_the_other() -> None:
    vote = VoteData("testnet", 1, 2, bytes(32), 3)
    intl, gm = suite("intl"), suite("gm")
    intl_signature = sign(intl, _keypair("intl")[0], vote, DOMAIN)
    gm_signature = sign(gm, _keypair("gm")[0], vote, DOMAIN)
    assert not verify(gm, _keypair("gm")[1], vote, intl_signature, DOMAIN)
    assert not verify(intl, _keypair("intl")[1], vote, gm_signature, DOMAIN)


# --- Merkle roots ---------------------------------------------------------------------------

items_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=9)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
def test_merkle_root_of_no_items_is_the_documented_constant(chosen: Suite) -> None:
    assert merkle_root(chosen, []) == chosen.hash(LEAF_HASH_DOMAIN)
    assert len(merkle_root(chosen, [])) == chosen.hash_size


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(item=st.binary(max_size=80))
def test_root_of_one_item_is_a_prefixed_leaf_not_the_plain_hash(chosen: Suite, item: bytes) -> None:
    root = merkle_root(chosen, [item])
    assert root != chosen.hash(item)
    assert root == chosen.hash(LEAF_HASH_DOMAIN + item)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(items=items_lists.filter(lambda xs: len(set(xs)) > 1), data=st.data())
def test_merkle_root_is_order_sensitive(
    chosen: Suite, items: list[bytes], data: st.DataObject
) -> None:
    reordered = data.draw(st.permutations(items))
    assume(reordered != items)
    assert merkle_root(chosen, reordered) != merkle_root(chosen, items)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(first=items_lists, second=items_lists)
def test_distinct_non_empty_lists_have_distinct_roots(
    chosen: Suite, first: list[bytes], second: list[bytes]
) -> None:
    assume(first != second)
    assert merkle_root(chosen, first) != merkle_root(chosen, second)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(a=st.binary(max_size=40), b=st.binary(max_size=40))
def test_a_leaf_cannot_pose_as_an_inner_node(chosen: Suite, a: bytes, b: bytes) -> None:
    leaf_a = chosen.hash(LEAF_HASH_DOMAIN + a)
    leaf_b = chosen.hash(LEAF_HASH_DOMAIN + b)
    root = merkle_root(chosen, [a, b])
    assert root == chosen.hash(NODE_HASH_DOMAIN + leaf_a + leaf_b)
    # One item made of the two leaf hashes, with or without the node prefix.
    assert merkle_root(chosen, [leaf_a + leaf_b]) != root
    assert merkle_root(chosen, [NODE_HASH_DOMAIN + leaf_a + leaf_b]) != root
    # The leaf hashes themselves given as items.
    assert merkle_root(chosen, [leaf_a, leaf_b]) != root
    # Unprefixed hashing would make the single-item tree collide with the pair.
    assert merkle_root(chosen, [a + b]) != root


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(items=st.lists(st.binary(max_size=20), min_size=3, max_size=9).filter(lambda x: len(x) % 2))
def test_odd_last_node_is_promoted_not_duplicated(chosen: Suite, items: list[bytes]) -> None:
    # Duplicating the last node (Bitcoin's CVE-2012-2459) would make these two equal.
    assert merkle_root(chosen, items) != merkle_root(chosen, [*items, items[-1]])


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
def test_three_item_tree_shape(chosen: Suite) -> None:
    leaves = [chosen.hash(LEAF_HASH_DOMAIN + item) for item in (b"a", b"b", b"c")]
    left = chosen.hash(NODE_HASH_DOMAIN + leaves[0] + leaves[1])
    expected = chosen.hash(NODE_HASH_DOMAIN + left + leaves[2])
    assert merkle_root(chosen, [b"a", b"b", b"c"]) == expected


def test_merkle_roots_differ_between_suites() -> None:
    roots = {merkle_root(chosen, [b"a", b"b"]) for chosen in ALL_SUITES}
    assert len(roots) == len(ALL_SUITES)


# --- Block ids ------------------------------------------------------------------------------

BASE_HEADER = BlockHeader(
    chain_id="testnet",
    protocol_version=1,
    epoch=2,
    round=5,
    height=4,
    parent_id=b"\x01" * 32,
    justify=QuorumCertificate(2, 4, b"\x01" * 32, 3, [SignerSignature(0, b"\x02" * 64)]),
    author=b"\x03" * 32,
    timestamp_ms=1_700_000_000_000,
    payload_root=b"\x04" * 32,
    payload_count=10,
    next_epoch=None,
)

# One different, valid value for every header field.
HEADER_CHANGES: dict[str, Any] = {
    "chain_id": "testnet2",
    "protocol_version": 2,
    "epoch": 3,
    "round": 6,
    "height": 5,
    "parent_id": b"\x11" * 32,
    "justify": msgspec.structs.replace(
        BASE_HEADER.justify, signatures=[SignerSignature(1, b"\x02" * 64)]
    ),
    "author": b"\x13" * 32,
    "timestamp_ms": 1_700_000_000_001,
    "payload_root": b"\x14" * 32,
    "payload_count": 11,
    "next_epoch": EpochConfig(3, [Validator(b"\x05" * 32, b"\x06" * 32, 1)]),
}


def test_header_changes_cover_every_field() -> None:
    assert set(HEADER_CHANGES) == set(BlockHeader.__struct_fields__)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@pytest.mark.parametrize("field", list(HEADER_CHANGES))
def test_block_id_changes_when_any_header_field_changes(chosen: Suite, field: str) -> None:
    changed = msgspec.structs.replace(BASE_HEADER, **{field: HEADER_CHANGES[field]})
    assert getattr(changed, field) != getattr(BASE_HEADER, field)
    assert decode(encode(changed), BlockHeader) == changed
    assert block_id(chosen, changed) != block_id(chosen, BASE_HEADER)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
@PROPERTY
@given(first=block_headers(), second=block_headers())
def test_block_id_identifies_the_header(
    chosen: Suite, first: BlockHeader, second: BlockHeader
) -> None:
    same = decode(encode(first), BlockHeader)
    assert block_id(chosen, same) == block_id(chosen, first)
    assert len(block_id(chosen, first)) == chosen.hash_size
    if first != second:
        assert block_id(chosen, first) != block_id(chosen, second)


@pytest.mark.parametrize("chosen", ALL_SUITES, ids=SUITE_NAMES)
def test_block_id_is_domain_separated(chosen: Suite) -> None:
    identifier = block_id(chosen, BASE_HEADER)
    encoded = encode(BASE_HEADER)
    assert identifier == chosen.hash(BLOCK_HASH_DOMAIN + encoded)
    assert identifier != chosen.hash(encoded)
    assert identifier != merkle_root(chosen, [encoded])
    assert identifier != chosen.hash(SIGNING_DOMAIN + encoded)


def test_block_ids_differ_between_suites() -> None:
    ids = {block_id(chosen, BASE_HEADER) for chosen in ALL_SUITES}
    assert len(ids) == len(ALL_SUITES)


# --- Bound to the genesis, one id per transaction ----------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_a_signature_never_verifies_on_a_chain_with_another_genesis(name: str) -> None:
    """Regression (security review): signatures committed only to the chain-id string, so a
    key reused on a rehearsal chain with the same chain id let its transactions replay from
    nonce 0. Test: the same body, same chain id, signed for one genesis, fails on another."""
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    body = TransactionBody("bank-chain", "alice", public_key, 0, "asset", 1, "transfer", {}, 10)
    rehearsal = SigningDomain(chosen.hash(b"rehearsal genesis"))
    production = SigningDomain(chosen.hash(b"production genesis"))
    signature = sign(chosen, private_key, body, rehearsal)
    assert verify(chosen, public_key, body, signature, rehearsal)
    assert not verify(chosen, public_key, body, signature, production)
    vote = VoteData("bank-chain", 0, 1, bytes(32), 1)
    vote_signature = sign(chosen, private_key, vote, rehearsal)
    assert not verify(chosen, public_key, vote, vote_signature, production)


def test_a_genesis_hash_has_the_suites_hash_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningDomain(b"short")


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_a_transactions_id_is_its_body_not_its_signature(name: str) -> None:
    """Regression (security review): the id hashed body and signature together, so a
    re-signed body (SM2 signatures are randomised) was another transaction to the mempool,
    dedupe and receipt lookup. Test: two signatures of one body give one id; another body
    another id; the id is the body's hash under the transaction-id tag."""
    chosen = suite(name)
    private_key, public_key = _keypair(name)
    body = TransactionBody("bank-chain", "alice", public_key, 0, "asset", 1, "transfer", {}, 10)
    first = Transaction(body, sign(chosen, private_key, body, DOMAIN))
    second = Transaction(body, sign(chosen, private_key, body, DOMAIN))
    if name == "gm":
        assert first.signature != second.signature  # SM2 draws a fresh k each time
    assert transaction_id(chosen, first.body) == transaction_id(chosen, second.body)
    assert transaction_id(chosen, body) == chosen.hash(TX_ID_DOMAIN + encode(body))
    other = msgspec.structs.replace(body, nonce=1)
    assert transaction_id(chosen, other) != transaction_id(chosen, body)
