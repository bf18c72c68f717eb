"""The `asset` contract: transfers, issue and redeem by the issuer only, conservation."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.execution.contracts.asset import Asset
from consortia.execution.engine import Receipt
from tests.execution_helpers import Ledger, make_ledger

ACCOUNTS = {
    "central": ("bank-0", 0),  # the first account of the first member: CNY's issuer
    "alice": ("bank-1", 100_000),
    "bob": ("bank-2", 50_000),
    "carol": ("bank-3", 0),
}


def ledger() -> Ledger:
    return make_ledger([Asset], ACCOUNTS)


def call(chain: Ledger, sender: str, method: str, args: dict[str, Any]) -> Receipt:
    nonce = chain.engine.query("identity", f"account/{sender}")["nonce"]
    receipts: list[Receipt] = chain.block(chain.tx(sender, "asset", method, args, nonce=nonce))
    receipt = receipts[0]
    return receipt


def balance(chain: Ledger, account: str, currency: str = "CNY") -> int:
    return int(chain.engine.query("asset", f"balance/{currency}/{account}") or 0)


def total(chain: Ledger) -> int:
    return sum(balance(chain, account) for account in ACCOUNTS)


def test_transfer_moves_money_and_reports_it() -> None:
    chain = ledger()
    receipt = call(chain, "alice", "transfer", {"to": "carol", "amount": 30_000})
    assert receipt.ok, receipt
    assert (balance(chain, "alice"), balance(chain, "carol")) == (70_000, 30_000)
    (event,) = receipt.events
    assert (event.contract, event.name) == ("asset", "transferred")
    assert event.fields == {
        "currency": "CNY",
        "amount": 30_000,
        "source": "alice",
        "target": "carol",
    }


def test_a_transfer_of_everything_leaves_zero() -> None:
    chain = ledger()
    assert call(chain, "bob", "transfer", {"to": "alice", "amount": 50_000}).ok
    assert balance(chain, "bob") == 0


def test_insufficient_funds_changes_nothing_but_the_nonce() -> None:
    chain = ledger()
    receipt = call(chain, "bob", "transfer", {"to": "alice", "amount": 50_001})
    assert (receipt.ok, receipt.code) == (False, "insufficient_funds")
    assert (balance(chain, "alice"), balance(chain, "bob")) == (100_000, 50_000)
    assert chain.engine.query("identity", "account/bob")["nonce"] == 1


def test_unknown_account_is_refused() -> None:
    chain = ledger()
    receipt = call(chain, "alice", "transfer", {"to": "mallory", "amount": 1})
    assert receipt.code == "unknown_account"
    assert balance(chain, "alice") == 100_000


def test_malformed_arguments_are_bad_arguments() -> None:
    chain = ledger()
    for args in (
        {"to": "bob", "amount": 0},
        {"to": "bob", "amount": -5},
        {"to": "bob", "amount": "10"},
        {"to": "bob", "amount": True},
        {"to": "bob", "amount": 2**62 + 1},
        {"to": "bob", "amount": 1, "currency": "cny"},
        {"to": "bob", "amount": 1, "currency": "ÄÖÜ"},
        {"to": "", "amount": 1},
        {"amount": 1},
    ):
        assert call(chain, "alice", "transfer", args).code == "bad_argument", args
    assert total(chain) == 150_000


def test_only_the_issuer_issues_and_redeems() -> None:
    chain = ledger()
    assert chain.engine.query("asset", "issuer/CNY") == "central"
    assert call(chain, "alice", "issue", {"amount": 10}).code == "not_issuer"
    assert call(chain, "alice", "redeem", {"amount": 10}).code == "not_issuer"
    assert call(chain, "central", "issue", {"amount": 1_000}).ok
    assert balance(chain, "central") == 1_000
    assert chain.engine.query("asset", "supply/CNY") == 151_000
    assert call(chain, "central", "redeem", {"amount": 1_001}).code == "insufficient_funds"
    assert call(chain, "central", "redeem", {"amount": 400}).ok
    assert (balance(chain, "central"), chain.engine.query("asset", "supply/CNY")) == (600, 150_600)


def test_a_currency_without_an_issuer_cannot_be_issued() -> None:
    chain = ledger()
    assert call(chain, "central", "issue", {"amount": 1, "currency": "USD"}).code == "not_issuer"


def test_supply_cannot_overflow() -> None:
    chain = ledger()
    receipt = call(chain, "central", "issue", {"amount": 2**62})
    assert receipt.code == "supply_overflow"


def test_without_a_regulator_no_observation_is_made() -> None:
    chain = ledger()
    receipt = call(chain, "alice", "transfer", {"to": "bob", "amount": 1})
    assert [event.contract for event in receipt.events] == ["asset"]


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["transfer", "issue", "redeem"]),
        st.sampled_from(sorted(ACCOUNTS)),
        st.sampled_from(sorted(ACCOUNTS)),
        st.integers(min_value=1, max_value=120_000),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(OPERATIONS)
def test_money_is_conserved_except_by_issue_and_redeem(operations: list[Any]) -> None:
    chain = ledger()
    expected = total(chain)
    for method, sender, target, amount in operations:
        args = {"to": target, "amount": amount} if method == "transfer" else {"amount": amount}
        receipt = call(chain, sender, method, args)
        if receipt.ok and method != "transfer":
            expected += amount if method == "issue" else -amount
        assert total(chain) == expected == chain.engine.query("asset", "supply/CNY")
        assert all(balance(chain, account) >= 0 for account in ACCOUNTS)
