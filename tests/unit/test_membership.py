"""A node's say on proposals: only signed-envelope transactions in a block, and epoch changes
only as committed governance says."""

from __future__ import annotations

from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.genesis import engine_from_genesis
from consortia.execution.membership import EngineMembership
from consortia.node.chain import genesis_block_of, genesis_epoch
from tests.node_helpers import make_genesis, transfer


def _membership(*, envelopes_only: bool = True) -> tuple[EngineMembership, bytes]:
    genesis = make_genesis()
    engine = engine_from_genesis(genesis, BUILTIN_CONTRACTS)
    return EngineMembership(engine, envelopes_only=envelopes_only), transfer(
        genesis, "alice", "bob", 5, 0
    )


def test_a_block_of_transactions_is_accepted() -> None:
    membership, tx = _membership()
    genesis = make_genesis()
    header = genesis_block_of(genesis).header
    assert membership.check_payload(header, [])
    assert membership.check_payload(header, [tx, transfer(genesis, "alice", "bob", 5, 1)])


def test_a_block_carrying_one_transaction_twice_is_refused() -> None:
    membership, tx = _membership()
    genesis = make_genesis()
    other = transfer(genesis, "bob", "alice", 1, 0)
    header = genesis_block_of(genesis).header
    assert not membership.check_payload(header, [tx, other, tx])


def test_a_block_with_any_item_that_is_no_transaction_is_refused() -> None:
    membership, tx = _membership()
    header = genesis_block_of(make_genesis()).header
    for smuggled in (b"", b"arbitrary data", tx[:-1], tx + b"\x00", b"\x92\x01\x02"):
        assert not membership.check_payload(header, [tx, smuggled]), smuggled


def test_the_simulator_may_carry_filler_items() -> None:
    membership, _ = _membership(envelopes_only=False)
    header = genesis_block_of(make_genesis()).header
    assert membership.check_payload(header, [b"0:0:1:0"])


def test_no_epoch_change_without_governance() -> None:
    membership, _ = _membership()
    genesis = make_genesis()
    assert membership.next_epoch(0) is None
    header = genesis_block_of(genesis).header
    assert not membership.check_epoch_change(header, genesis_epoch(genesis))
