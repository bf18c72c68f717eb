"""The `smallbank` contract: customers opened at genesis (benchmark accounts only), each of
the six transaction types, insufficient funds refused without a change, overdraft with its
penalty, and money conserved by the transfers between customers."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.smallbank import (
    CUSTOMER_PREFIX,
    INITIAL_CHECKING,
    INITIAL_SAVINGS,
    OVERDRAFT_PENALTY,
    SmallBank,
    read_customer,
)
from consortia.execution.engine import Receipt
from consortia.identity.bench_accounts import PREFIX
from tests.execution_helpers import Ledger, make_ledger

A, B, TELLER = "bench-000000", "bench-000001", "alice"
ACCOUNTS = {A: ("bank-0", 0), B: ("bank-1", 0), TELLER: ("bank-2", 0)}


def ledger() -> Ledger:
    return make_ledger([Asset, SmallBank], ACCOUNTS)


def call(chain: Ledger, method: str, args: dict[str, Any], sender: str = TELLER) -> Receipt:
    receipts: list[Receipt] = chain.block(chain.tx(sender, "smallbank", method, args))
    return receipts[0]


def balances(chain: Ledger, customer: str) -> tuple[int, int]:
    record = read_customer(chain.engine.query, customer)
    assert record is not None
    return record["checking"], record["savings"]


def test_the_benchmark_accounts_are_its_customers_from_genesis() -> None:
    assert CUSTOMER_PREFIX == PREFIX
    chain = ledger()
    assert balances(chain, A) == balances(chain, B) == (INITIAL_CHECKING, INITIAL_SAVINGS)
    assert read_customer(chain.engine.query, TELLER) is None
    receipt = call(chain, "deposit_checking", {"customer": TELLER, "amount": 5})
    assert (receipt.ok, receipt.code) == (False, "unknown_customer")


def test_amalgamate_moves_everything_into_the_targets_checking() -> None:
    chain = ledger()
    receipt = call(chain, "amalgamate", {"source": A, "target": B})
    assert receipt.ok and receipt.result == INITIAL_CHECKING + INITIAL_SAVINGS
    assert balances(chain, A) == (0, 0)
    assert balances(chain, B) == (2 * INITIAL_CHECKING + INITIAL_SAVINGS, INITIAL_SAVINGS)
    same = call(chain, "amalgamate", {"source": B, "target": B})
    assert (same.ok, same.code) == (False, "same_customer")


def test_get_balance_returns_checking_plus_savings_and_writes_nothing() -> None:
    chain = ledger()
    root = chain.engine.root
    receipt = call(chain, "get_balance", {"customer": A})
    assert receipt.ok and receipt.result == INITIAL_CHECKING + INITIAL_SAVINGS
    assert balances(chain, A) == (INITIAL_CHECKING, INITIAL_SAVINGS)
    # Only the teller's nonce changed: the customer's record is as it was.
    assert chain.engine.root != root and balances(chain, B) == balances(chain, A)


def test_deposit_checking_adds_and_refuses_a_non_positive_amount() -> None:
    chain = ledger()
    assert call(chain, "deposit_checking", {"customer": A, "amount": 250}).ok
    assert balances(chain, A) == (INITIAL_CHECKING + 250, INITIAL_SAVINGS)
    for amount in (0, -5, "7"):
        receipt = call(chain, "deposit_checking", {"customer": A, "amount": amount})
        assert (receipt.ok, receipt.code) == (False, "bad_argument")
    assert balances(chain, A) == (INITIAL_CHECKING + 250, INITIAL_SAVINGS)


def test_send_payment_moves_checking_and_refuses_insufficient_funds() -> None:
    chain = ledger()
    assert call(chain, "send_payment", {"source": A, "target": B, "amount": 400}).ok
    assert balances(chain, A) == (INITIAL_CHECKING - 400, INITIAL_SAVINGS)
    assert balances(chain, B) == (INITIAL_CHECKING + 400, INITIAL_SAVINGS)
    # Savings do not count: only checking pays.
    too_much = {"source": A, "target": B, "amount": INITIAL_CHECKING - 399}
    receipt = call(chain, "send_payment", too_much)
    assert (receipt.ok, receipt.code) == (False, "insufficient_funds")
    assert balances(chain, A) == (INITIAL_CHECKING - 400, INITIAL_SAVINGS)
    assert balances(chain, B) == (INITIAL_CHECKING + 400, INITIAL_SAVINGS)


def test_transact_savings_adds_or_withdraws_but_never_below_zero() -> None:
    chain = ledger()
    assert call(chain, "transact_savings", {"customer": A, "amount": 100}).ok
    assert call(chain, "transact_savings", {"customer": A, "amount": -300}).ok
    assert balances(chain, A) == (INITIAL_CHECKING, INITIAL_SAVINGS - 200)
    receipt = call(chain, "transact_savings", {"customer": A, "amount": -INITIAL_SAVINGS})
    assert (receipt.ok, receipt.code) == (False, "insufficient_funds")
    zero = call(chain, "transact_savings", {"customer": A, "amount": 0})
    assert (zero.ok, zero.code) == (False, "bad_argument")
    assert balances(chain, A) == (INITIAL_CHECKING, INITIAL_SAVINGS - 200)


def test_write_check_covered_and_overdrawn_with_the_penalty() -> None:
    chain = ledger()
    assert call(chain, "write_check", {"customer": A, "amount": 1_500_000}).ok
    # Covered by checking plus savings: no penalty, checking goes below zero.
    assert balances(chain, A) == (INITIAL_CHECKING - 1_500_000, INITIAL_SAVINGS)
    assert call(chain, "write_check", {"customer": A, "amount": 600_000}).ok
    # 500,000 left in all, a check of 600,000: overdraft, the penalty on top.
    expected = INITIAL_CHECKING - 2_100_000 - OVERDRAFT_PENALTY
    assert balances(chain, A) == (expected, INITIAL_SAVINGS)
    # An overdrawn customer cannot send a payment.
    receipt = call(chain, "send_payment", {"source": A, "target": B, "amount": 1})
    assert (receipt.ok, receipt.code) == (False, "insufficient_funds")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("amalgamate", {"source": A}),
        ("send_payment", {"source": A, "target": B}),
        ("get_balance", {}),
        ("write_check", {"customer": A, "amount": 10**13}),
    ],
)
def test_malformed_arguments_are_refused(method: str, args: dict[str, Any]) -> None:
    chain = ledger()
    receipt = call(chain, method, args)
    assert (receipt.ok, receipt.code) == (False, "bad_argument")
    assert balances(chain, A) == (INITIAL_CHECKING, INITIAL_SAVINGS)


def test_transfers_between_customers_conserve_their_total() -> None:
    chain = ledger()
    before = sum(sum(balances(chain, c)) for c in (A, B))
    call(chain, "send_payment", {"source": B, "target": A, "amount": 77})
    call(chain, "amalgamate", {"source": A, "target": B})
    call(chain, "send_payment", {"source": B, "target": A, "amount": 1_000})
    assert sum(sum(balances(chain, c)) for c in (A, B)) == before
