"""The `receivable` contract: the worked example of docs/contracts.md, every refusal, and
property tests over random histories run through the real engine.

The worked example section of docs/contracts.md is generated from this module
(`python -m tests.unit.test_contract_receivable` prints it) and a test checks it is current.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.receivable import PARTS_MAX, Receivable
from consortia.execution.contracts.receivable_state import DOCUMENTS_MAX
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.engine import Receipt
from tests.execution_helpers import Ledger, make_ledger
from tests.unit.test_contract_regulator import StandInIdentity

DOC = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
BEGIN, END = "<!-- worked-example:begin -->", "<!-- worked-example:end -->"
DIGEST = "5d" * 32  # the digest of the invoice's file (computed off-chain)
INVOICE = f"invoice:{DIGEST}"  # a document as anchored: its name and its digest


def call(chain: Ledger, sender: str, method: str, args: dict[str, Any]) -> Receipt:
    nonce = chain.engine.query("identity", f"account/{sender}")["nonce"]
    receipts: list[Receipt] = chain.block(chain.tx(sender, "receivable", method, args, nonce=nonce))
    receipt = receipts[0]
    return receipt


def ok(chain: Ledger, sender: str, method: str, args: dict[str, Any]) -> Receipt:
    receipt = call(chain, sender, method, args)
    assert receipt.ok, receipt
    return receipt


def balance(chain: Ledger, account: str) -> int:
    return int(chain.engine.query("asset", f"balance/CNY/{account}") or 0)


def part(chain: Ledger, part_id: str) -> dict[str, Any]:
    value = chain.engine.query("receivable", f"part/{part_id}")
    assert isinstance(value, dict)
    return value


def wait_until(chain: Ledger, height: int) -> None:
    """Empty blocks until the next block has `height`."""
    while chain.height < height - 1:
        chain.block()


# ---------------------------------------------------------------------- the worked example


def discounted_price(amount: int, rate_basis_points: int, days: int) -> int:
    """What a bank pays for `amount` due in `days` at a yearly discount rate (integers only;
    the discount is rounded down, so the seller gets the odd fen)."""
    discount = amount * rate_basis_points * days // (10_000 * 365)
    return amount - discount


EXAMPLE_ACCOUNTS = {
    "central": ("bank-0", 0),  # the settlement bank, issuer of CNY
    "carmaker": ("bank-1", 150_000_000),  # the core enterprise: 1,500,000.00 CNY
    "tier1": ("bank-1", 0),
    "tier2": ("bank-2", 0),
    "bank": ("bank-3", 50_000_000),  # the financing bank's own account: 500,000.00 CNY
}
SHOWN = ("carmaker", "tier1", "tier2", "bank")
RECEIVABLE = "INV-2024-0001"
MATURITY = 100
PRICE = discounted_price(30_000_000, 240, 90)  # 2.4% a year, 90 days left


@dataclass(frozen=True)
class Step:
    height: int
    signer: str
    method: str
    args: dict[str, Any]


EXAMPLE = [
    Step(
        1,
        "carmaker",
        "issue",
        {
            "receivable_id": RECEIVABLE,
            "holder": "tier1",
            "amount": 100_000_000,
            "currency": "CNY",
            "maturity_height": MATURITY,
            "documents": [INVOICE],
        },
    ),
    Step(2, "tier1", "accept", {"receivable_id": RECEIVABLE}),
    Step(
        3,
        "tier1",
        "split_transfer",
        {"part_id": f"{RECEIVABLE}#0", "to": "tier2", "amount": 30_000_000},
    ),
    Step(
        4,
        "tier2",
        "offer_finance",
        {"part_id": f"{RECEIVABLE}#1", "bank": "bank", "price": PRICE},
    ),
    Step(5, "bank", "finance", {"part_id": f"{RECEIVABLE}#1", "bank": "bank", "price": PRICE}),
    Step(MATURITY, "carmaker", "repay", {"receivable_id": RECEIVABLE}),
]


def run_example() -> tuple[Ledger, list[dict[str, int]], list[str]]:
    """Run the example; return the chain, the balances and the parts after each step."""
    chain = make_ledger([Asset, Receivable], EXAMPLE_ACCOUNTS)
    balances = [{name: balance(chain, name) for name in SHOWN}]
    parts = ["not issued"]
    for step in EXAMPLE:
        wait_until(chain, step.height)
        ok(chain, step.signer, step.method, step.args)
        assert chain.height == step.height
        balances.append({name: balance(chain, name) for name in SHOWN})
        parts.append(describe_parts(chain))
    return chain, balances, parts


def describe_parts(chain: Ledger) -> str:
    record = chain.engine.query("receivable", f"receivable/{RECEIVABLE}")
    shown = []
    for part_id in record["parts"]:
        found = part(chain, part_id)
        number = part_id.removeprefix(RECEIVABLE)
        shown.append(f"{number} {found['holder']} {yuan(found['amount'])} {found['status']}")
    return f"{record['status']}: " + ("; ".join(shown) or "no parts")


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def worked_example_markdown() -> str:
    _, balances, parts = run_example()
    lines = ["```text", "height  signer    call"]
    for step in EXAMPLE:
        lines.append(f"{step.height:<7} {step.signer:<9} receivable.{step.method}")
        lines.append(f"        {json.dumps(step.args)}")
    lines += ["```", "", "Balances in CNY, and the receivable, after each step:", ""]
    lines.append("| after | " + " | ".join(SHOWN) + " | receivable and parts |")
    lines.append("|---|" + "---:|" * len(SHOWN) + "---|")
    labels = ["genesis", *(f"{s.method} (height {s.height})" for s in EXAMPLE)]
    for label, row, held in zip(labels, balances, parts, strict=True):
        amounts = " | ".join(yuan(row[n]) for n in SHOWN)
        lines.append(f"| {label} | {amounts} | {held} |")
    return "\n".join(lines)


def test_the_worked_example() -> None:
    chain, balances, _ = run_example()
    assert PRICE == 29_822_466  # 300,000.00 less 1,775.34 discount
    assert balances[0] == {"carmaker": 150_000_000, "tier1": 0, "tier2": 0, "bank": 50_000_000}
    # Issue, accept, split, offer: no money moves.
    assert balances[1] == balances[2] == balances[3] == balances[4] == balances[0]
    # Finance: the bank pays tier2 the discounted price.
    assert balances[5] == {
        "carmaker": 150_000_000,
        "tier1": 0,
        "tier2": PRICE,
        "bank": 50_000_000 - PRICE,
    }
    # Repay: the carmaker pays face value; tier1 gets its 700,000.00, the bank 300,000.00.
    assert balances[6] == {
        "carmaker": 50_000_000,
        "tier1": 70_000_000,
        "tier2": PRICE,
        "bank": 50_000_000 - PRICE + 30_000_000,
    }
    first, second = part(chain, f"{RECEIVABLE}#0"), part(chain, f"{RECEIVABLE}#1")
    assert (first["holder"], first["amount"], first["status"]) == ("tier1", 70_000_000, "settled")
    assert (second["holder"], second["status"], second["financed_by"]) == (
        "bank",
        "settled",
        "bank",
    )
    assert first["debtor"] == second["debtor"] == "carmaker"
    assert first["maturity_height"] == second["maturity_height"] == MATURITY
    record = chain.engine.query("receivable", f"receivable/{RECEIVABLE}")
    assert record["status"] == "settled"


def test_the_doc_shows_the_worked_example_as_it_runs() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "docs/contracts.md lost its worked example markers"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == worked_example_markdown(), (
        "docs/contracts.md is stale: python -m tests.unit.test_contract_receivable"
    )


def test_the_example_emits_what_a_bank_watches() -> None:
    chain = make_ledger([Asset, Receivable], EXAMPLE_ACCOUNTS)
    names: list[str] = []
    for step in EXAMPLE:
        wait_until(chain, step.height)
        receipt = ok(chain, step.signer, step.method, step.args)
        names += [f"{e.contract}.{e.name}" for e in receipt.events]
    assert names == [
        "receivable.issued",
        "receivable.accepted",
        "receivable.part_split",
        "receivable.finance_offered",
        "asset.transferred",
        "receivable.financed",
        "asset.transferred",
        "receivable.part_paid",
        "asset.transferred",
        "receivable.part_paid",
        "receivable.settled",
    ]


# ---------------------------------------------------------------------- refusals


def issued(maturity: int = 50, **extra: Any) -> Ledger:
    """The example's chain with its receivable issued (height 1), not yet accepted."""
    chain = make_ledger([Asset, Receivable], EXAMPLE_ACCOUNTS)
    ok(chain, "carmaker", "issue", {**EXAMPLE[0].args, "maturity_height": maturity, **extra})
    return chain


def accepted(maturity: int = 50, **extra: Any) -> Ledger:
    chain = issued(maturity, **extra)
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    return chain


P0, P1 = f"{RECEIVABLE}#0", f"{RECEIVABLE}#1"


def code(chain: Ledger, sender: str, method: str, args: dict[str, Any]) -> str:
    receipt = call(chain, sender, method, args)
    assert not receipt.ok, receipt
    return receipt.code


def test_issue_refusals() -> None:
    chain = issued()
    base = EXAMPLE[0].args
    for change, expected in (
        ({}, "duplicate_receivable"),
        ({"receivable_id": "INV 1"}, "bad_argument"),
        ({"receivable_id": "x" * 65}, "bad_argument"),
        ({"amount": 0}, "bad_argument"),
        ({"amount": 2**62 + 1}, "bad_argument"),
        ({"currency": "cny"}, "bad_argument"),
        ({"documents": ["invoice:" + "AB" * 32]}, "bad_argument"),
        ({"documents": ["invoice:" + "ab" * 31]}, "bad_argument"),
        ({"documents": ["invoice:" + "ab" * 64]}, "bad_argument"),
        ({"documents": ["invoice" + "ab" * 32]}, "bad_argument"),
        ({"documents": [":" + DIGEST]}, "bad_argument"),
        ({"documents": ["in voice:" + DIGEST]}, "bad_argument"),
        ({"documents": []}, "bad_argument"),
        ({"documents": [f"d{n}:{DIGEST}" for n in range(17)]}, "bad_argument"),
        ({"documents": [INVOICE, INVOICE]}, "duplicate_document"),
        ({"documents": [INVOICE], "documents_digest": DIGEST}, "bad_argument"),
        ({"kind": "Goods"}, "bad_argument"),
        ({"order_ref": "PO 1"}, "bad_argument"),
        ({"grace_blocks": -1}, "bad_argument"),
        ({"grace_blocks": 100_001}, "bad_argument"),
        ({"maturity_height": "100"}, "bad_argument"),
    ):
        assert code(chain, "carmaker", "issue", {**base, **change}) == expected, change
    fresh = {**base, "receivable_id": "INV-2"}
    for change, expected in (
        ({"holder": "nobody"}, "unknown_account"),
        ({"holder": "carmaker"}, "holder_is_debtor"),
        ({"maturity_height": chain.height + 1}, "bad_maturity"),
        ({"currency": "USD"}, "unknown_currency"),
    ):
        assert code(chain, "carmaker", "issue", {**fresh, **change}) == expected, change


def test_accept_and_reject_refusals() -> None:
    chain = issued(maturity=6)
    rid = {"receivable_id": RECEIVABLE}
    assert code(chain, "tier1", "accept", {"receivable_id": "nope"}) == "unknown_receivable"
    assert code(chain, "tier2", "accept", rid) == "not_holder"
    assert code(chain, "carmaker", "reject", rid) == "not_holder"
    wait_until(chain, 6)
    assert code(chain, "tier1", "accept", rid) == "matured"
    assert ok(chain, "tier1", "reject", rid).events[0].name == "rejected"
    assert code(chain, "tier1", "accept", rid) == "not_pending"
    assert code(chain, "tier1", "reject", rid) == "not_pending"
    assert code(chain, "carmaker", "repay", rid) == "not_active"
    assert code(chain, "tier2", "mark_overdue", rid) == "not_active"


def test_accept_twice_is_refused() -> None:
    chain = accepted()
    assert code(chain, "tier1", "accept", {"receivable_id": RECEIVABLE}) == "not_pending"


def test_an_unaccepted_receivable_has_no_parts_and_cannot_be_repaid() -> None:
    chain = issued(maturity=3)
    assert code(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 1}) == (
        "unknown_part"
    )
    wait_until(chain, 3)
    assert code(chain, "carmaker", "repay", {"receivable_id": RECEIVABLE}) == "not_active"


def test_split_transfer_refusals() -> None:
    chain = accepted()
    split = {"part_id": P0, "to": "tier2", "amount": 10}
    assert code(chain, "tier1", "split_transfer", {**split, "part_id": "x#9"}) == "unknown_part"
    assert code(chain, "tier2", "split_transfer", split) == "not_holder"
    assert code(chain, "tier1", "split_transfer", {**split, "amount": 0}) == "bad_argument"
    too_much = {**split, "amount": 100_000_001}
    assert code(chain, "tier1", "split_transfer", too_much) == "bad_amount"
    assert code(chain, "tier1", "split_transfer", {**split, "to": "tier1"}) == "self_transfer"
    assert code(chain, "tier1", "split_transfer", {**split, "to": "carmaker"}) == (
        "holder_is_debtor"
    )
    assert code(chain, "tier1", "split_transfer", {**split, "to": "ghost"}) == "unknown_account"


def test_splitting_the_whole_part_moves_it() -> None:
    chain = accepted()
    receipt = ok(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 10**8})
    assert receipt.result == P0
    assert part(chain, P0)["holder"] == "tier2"
    record = chain.engine.query("receivable", f"receivable/{RECEIVABLE}")
    assert record["parts"] == [P0]


def test_a_split_cancels_the_pending_offer() -> None:
    chain = accepted()
    ok(chain, "tier1", "offer_finance", {"part_id": P0, "bank": "bank", "price": 90_000_000})
    ok(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 1})
    assert part(chain, P0)["offer"] is None
    args = {"part_id": P0, "bank": "bank", "price": 90_000_000}
    assert code(chain, "bank", "finance", args) == "no_matching_offer"


def test_parts_are_bounded() -> None:
    chain = accepted()
    nonce = chain.engine.query("identity", "account/tier1")["nonce"]
    split = {"part_id": P0, "to": "tier2", "amount": 1}
    txs = [
        chain.tx("tier1", "receivable", "split_transfer", split, nonce=nonce + n)
        for n in range(PARTS_MAX)
    ]
    receipts = chain.block(*txs)
    assert all(r.ok for r in receipts[:-1])
    assert receipts[-1].code == "too_many_parts"


def test_repaying_the_most_parts_fits_a_transaction_with_every_alert_firing() -> None:
    """The regulator never refuses a payment, not even by exhausting gas or events."""
    accounts = {**EXAMPLE_ACCOUNTS, "officer": ("regulator", 0)}
    chain = make_ledger([StandInIdentity, Asset, Receivable, Regulator], accounts)
    ok(chain, "carmaker", "issue", {**EXAMPLE[0].args, "maturity_height": 10})
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    nonce = chain.engine.query("identity", "account/tier1")["nonce"]
    splits = [
        chain.tx(
            "tier1",
            "receivable",
            "split_transfer",
            {"part_id": P0, "to": ("tier2", "bank")[n % 2], "amount": 2},
            nonce=nonce + n,
        )
        for n in range(PARTS_MAX - 1)
    ]
    assert all(receipt.ok for receipt in chain.block(*splits))
    rules = {
        "single_transfer_max": 1,
        "velocity_count": 1,
        "velocity_window_blocks": 100,
        "listed": ["carmaker", "tier1", "tier2", "bank"],
    }
    nonce = chain.engine.query("identity", "account/officer")["nonce"]
    (receipt,) = chain.block(chain.tx("officer", "regulator", "set_rules", rules, nonce=nonce))
    assert receipt.ok, receipt
    wait_until(chain, 10)
    receipt = ok(chain, "carmaker", "repay", {"receivable_id": RECEIVABLE})
    alerts = [e for e in receipt.events if e.name == "alert"]
    assert len(alerts) == 4 * PARTS_MAX - 1  # the first payment is within the velocity rule
    assert receipt.result == 100_000_000


def test_offer_and_withdraw_refusals() -> None:
    chain = accepted()
    offer = {"part_id": P0, "bank": "bank", "price": 99_000_000}
    assert code(chain, "tier2", "offer_finance", offer) == "not_holder"
    assert code(chain, "tier1", "offer_finance", {**offer, "price": 0}) == "bad_argument"
    assert code(chain, "tier1", "offer_finance", {**offer, "price": 10**8 + 1}) == "bad_price"
    assert code(chain, "tier1", "offer_finance", {**offer, "bank": "tier1"}) == "self_transfer"
    assert code(chain, "tier1", "offer_finance", {**offer, "bank": "carmaker"}) == (
        "holder_is_debtor"
    )
    assert code(chain, "tier1", "offer_finance", {**offer, "bank": "ghost"}) == "unknown_account"
    assert code(chain, "tier1", "withdraw_offer", {"part_id": P0}) == "no_offer"
    ok(chain, "tier1", "offer_finance", offer)
    assert code(chain, "tier2", "withdraw_offer", {"part_id": P0}) == "not_holder"
    ok(chain, "tier1", "withdraw_offer", {"part_id": P0})
    assert code(chain, "bank", "finance", {**offer}) == "no_matching_offer"


def test_finance_refusals() -> None:
    chain = accepted()
    offer = {"part_id": P0, "bank": "bank", "price": 40_000_000}
    assert code(chain, "bank", "finance", offer) == "no_matching_offer"
    ok(chain, "tier1", "offer_finance", offer)
    assert code(chain, "tier2", "finance", offer) == "not_bank"
    assert code(chain, "tier2", "finance", {**offer, "bank": "tier2"}) == "no_matching_offer"
    assert code(chain, "bank", "finance", {**offer, "price": 39_999_999}) == "no_matching_offer"
    assert code(chain, "bank", "finance", {**offer, "part_id": "nope"}) == "unknown_part"
    # The bank holds 500,000.00: it cannot pay 600,000.00, and then nothing changes.
    ok(chain, "tier1", "offer_finance", {**offer, "price": 60_000_000})
    assert code(chain, "bank", "finance", {**offer, "price": 60_000_000}) == "insufficient_funds"
    assert part(chain, P0)["status"] == "held"
    assert (balance(chain, "bank"), balance(chain, "tier1")) == (50_000_000, 0)


def test_a_frozen_holder_s_offer_cannot_be_taken_but_it_is_still_repaid() -> None:
    accounts = {**EXAMPLE_ACCOUNTS, "officer": ("regulator", 0)}
    chain = make_ledger([StandInIdentity, Asset, Receivable, Regulator], accounts)
    ok(chain, "carmaker", "issue", {**EXAMPLE[0].args, "maturity_height": 10})
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    offer = {"part_id": P0, "bank": "bank", "price": 40_000_000}
    ok(chain, "tier1", "offer_finance", offer)
    freeze = {"account": "tier1", "blocks": 20}
    nonce = chain.engine.query("identity", "account/officer")["nonce"]
    (receipt,) = chain.block(
        chain.tx("officer", "regulator", "emergency_freeze", freeze, nonce=nonce)
    )
    assert receipt.ok, receipt
    assert code(chain, "bank", "finance", offer) == "holder_frozen"
    wait_until(chain, 10)
    ok(chain, "carmaker", "repay", {"receivable_id": RECEIVABLE})
    assert balance(chain, "tier1") == 100_000_000


def test_a_part_is_never_financed_twice() -> None:
    """The classic fraud: the same claim sold to two banks."""
    accounts = {**EXAMPLE_ACCOUNTS, "bank2": ("bank-2", 90_000_000)}
    chain = make_ledger([Asset, Receivable], accounts)
    ok(chain, "carmaker", "issue", {**EXAMPLE[0].args, "maturity_height": 50})
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    offer = {"part_id": P0, "bank": "bank", "price": 40_000_000}
    ok(chain, "tier1", "offer_finance", offer)
    ok(chain, "bank", "finance", offer)
    second = {"part_id": P0, "bank": "bank2", "price": 40_000_000}
    assert code(chain, "tier1", "offer_finance", second) == "not_holder"
    assert code(chain, "bank2", "finance", second) == "already_financed"
    assert code(chain, "bank", "finance", offer) == "already_financed"
    # The financing bank cannot sell it on or split it either.
    assert code(chain, "bank", "offer_finance", second) == "already_financed"
    split = {"part_id": P0, "to": "tier2", "amount": 1}
    assert code(chain, "bank", "split_transfer", split) == "already_financed"
    assert balance(chain, "bank2") == 90_000_000


def test_matured_parts_are_not_traded() -> None:
    chain = accepted(maturity=5)
    ok(chain, "tier1", "offer_finance", {"part_id": P0, "bank": "bank", "price": 1})
    wait_until(chain, 5)
    for signer, method, args in (
        ("tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 1}),
        ("tier1", "offer_finance", {"part_id": P0, "bank": "bank", "price": 1}),
        ("bank", "finance", {"part_id": P0, "bank": "bank", "price": 1}),
    ):
        assert code(chain, signer, method, args) == "matured", method


def test_repay_refusals_and_atomicity() -> None:
    accounts = {**EXAMPLE_ACCOUNTS, "carmaker": ("bank-1", 99_999_999)}
    chain = make_ledger([Asset, Receivable], accounts)
    ok(chain, "carmaker", "issue", {**EXAMPLE[0].args, "maturity_height": 10})
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    ok(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 1})
    rid = {"receivable_id": RECEIVABLE}
    assert code(chain, "carmaker", "repay", rid) == "not_matured"
    wait_until(chain, 10)
    assert code(chain, "tier1", "repay", rid) == "not_debtor"
    assert code(chain, "carmaker", "repay", {"receivable_id": "nope"}) == "unknown_receivable"
    # One fen short: nothing is paid, not even the parts it could have covered.
    assert code(chain, "carmaker", "repay", rid) == "insufficient_funds"
    assert (balance(chain, "tier1"), balance(chain, "tier2")) == (0, 0)
    assert part(chain, P1)["status"] == "held"
    fund = {"to": "carmaker", "amount": 1}
    nonce = chain.engine.query("identity", "account/bank")["nonce"]
    assert chain.block(chain.tx("bank", "asset", "transfer", fund, nonce=nonce))[0].ok
    assert ok(chain, "carmaker", "repay", rid).result == 100_000_000
    assert code(chain, "carmaker", "repay", rid) == "already_settled"
    assert code(chain, "tier1", "mark_overdue", rid) == "already_settled"
    assert code(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 1}) == (
        "already_settled"
    )


def test_overdue_after_the_grace_period_then_late_repayment() -> None:
    chain = accepted(maturity=5, grace_blocks=3)
    ok(chain, "tier1", "split_transfer", {"part_id": P0, "to": "tier2", "amount": 5})
    rid = {"receivable_id": RECEIVABLE}
    wait_until(chain, 8)  # maturity 5 + grace 3: not overdue until height 9
    assert code(chain, "tier2", "mark_overdue", rid) == "not_overdue"
    receipt = ok(chain, "bank", "mark_overdue", rid)  # anyone may, once it is due
    assert [e.name for e in receipt.events] == ["overdue"]
    assert {part(chain, p)["status"] for p in (P0, P1)} == {"overdue"}
    assert code(chain, "tier1", "mark_overdue", rid) == "already_overdue"
    offer = {"part_id": P1, "bank": "bank", "price": 1}
    assert code(chain, "tier2", "offer_finance", offer) == "overdue"
    assert ok(chain, "carmaker", "repay", rid).result == 100_000_000
    assert {part(chain, p)["status"] for p in (P0, P1)} == {"settled"}
    assert balance(chain, "tier2") == 5


# ---------------------------------------------------------------------- property tests

PEOPLE = ["carmaker", "builder", "s1", "s2", "s3", "bankA", "bankB"]
PROPERTY_ACCOUNTS = {
    "central": ("bank-0", 0),
    "carmaker": ("bank-1", 300_000),
    "builder": ("bank-1", 50_000),
    "s1": ("bank-2", 1_000),
    "s2": ("bank-2", 0),
    "s3": ("bank-3", 0),
    "bankA": ("bank-3", 200_000),
    "bankB": ("bank-0", 100_000),
}
IDS = ["R0", "R1", "R2"]

# Operations name receivables and parts by an index into those that exist when they run, so
# most of them reach the contract's real checks instead of failing on unknown ids.
small = st.integers(min_value=0, max_value=2**16)
who = st.sampled_from(PEOPLE)
banks = st.sampled_from(["bankA", "bankB"])
debtors = st.sampled_from(["carmaker", "builder"])
mostly_right = st.sampled_from([True, True, True, False])  # the signer is the one entitled
ISSUE = st.tuples(st.just("issue"), who, st.sampled_from(IDS), who, small, st.integers(1, 12))
TRADE = st.one_of(
    st.tuples(st.just("split"), small, who, small, mostly_right),
    st.tuples(st.just("offer"), small, st.one_of(banks, who), small, mostly_right),
    st.tuples(st.just("finance"), small, who, small, mostly_right),
    st.tuples(st.just("repay"), small, mostly_right),
    st.tuples(st.just("wait"), st.integers(1, 3)),
)
OPERATION = st.one_of(
    ISSUE,
    st.tuples(st.just("accept"), small, mostly_right),
    st.tuples(st.just("reject"), small, mostly_right),
    TRADE,
    st.tuples(st.just("overdue"), small, who),
    st.tuples(st.just("transfer"), who, who, small),
    st.tuples(st.just("mint"), small),
    st.tuples(st.just("document"), small, who, st.sampled_from(["delivery", "invoice", "bl"])),
)


def _opened(issues: list[tuple[str, int, int]]) -> list[tuple[Any, ...]]:
    """Issue to s1 and accept each of up to three receivables."""
    opened: list[tuple[Any, ...]] = []
    for index, (debtor, amount, term) in enumerate(issues):
        opened += [("issue", debtor, IDS[index], "s1", amount, term), ("accept", index, True)]
    return opened


# After trading, everything matures; debtors repay or it goes overdue (grace is 2 blocks).
ENDINGS = st.lists(
    st.tuples(st.just("repay"), small, mostly_right)
    | st.tuples(st.just("overdue"), small, who)
    | st.tuples(st.just("wait"), st.integers(1, 3)),
    max_size=6,
).map(lambda ending: [("wait", 40), *ending])

# Busy histories: open receivables, trade them, then let them mature.
BUSY = st.tuples(
    st.lists(st.tuples(debtors, small, st.integers(10, 40)), min_size=1, max_size=3).map(_opened),
    st.lists(TRADE, min_size=15, max_size=40),
    ENDINGS,
).map(lambda parts: parts[0] + parts[1] + parts[2])


class History:
    """A chain, the random history applied to it, and what the invariants need to remember."""

    def __init__(self) -> None:
        self.chain = make_ledger([Asset, Receivable], PROPERTY_ACCOUNTS)
        self.financings: dict[str, str] = {}  # part id -> the bank that financed it
        # receivable id -> the documents it anchored, as first seen: never changed after
        self.documents: dict[str, list[dict[str, Any]]] = {}
        self.succeeded: set[str] = set()

    # --------------------------------------------------------------- reading state

    def parts(self) -> dict[str, dict[str, Any]]:
        keys = self.chain.engine.state.keys_with_prefix(b"receivable/part/")
        return {k.decode().removeprefix("receivable/part/"): self.read(k) for k in keys}

    def receivables(self) -> dict[str, dict[str, Any]]:
        keys = self.chain.engine.state.keys_with_prefix(b"receivable/receivable/")
        return {k.decode().removeprefix("receivable/receivable/"): self.read(k) for k in keys}

    def read(self, key: bytes) -> dict[str, Any]:
        contract, rest = key.decode().split("/", 1)
        value = self.chain.engine.query(contract, rest)
        assert isinstance(value, dict)
        return value

    def balances(self) -> dict[str, int]:
        keys = self.chain.engine.state.keys_with_prefix(b"asset/balance/CNY/")
        return {k.decode(): int(self.chain.engine.query("asset", k.decode()[6:])) for k in keys}

    def pick_part(self, index: int) -> tuple[str, dict[str, Any]] | None:
        parts = self.parts()
        if not parts:
            return None
        part_id = sorted(parts)[index % len(parts)]
        return part_id, parts[part_id]

    # --------------------------------------------------------------- running operations

    def send(self, sender: str, contract: str, method: str, args: dict[str, Any]) -> Receipt:
        nonce = self.chain.engine.query("identity", f"account/{sender}")["nonce"]
        receipts: list[Receipt] = self.chain.block(
            self.chain.tx(sender, contract, method, args, nonce=nonce)
        )
        receipt = receipts[0]
        if receipt.ok:
            self.succeeded.add(method)
        return receipt

    def apply(self, operation: tuple[Any, ...]) -> None:
        getattr(self, f"op_{operation[0]}")(*operation[1:])

    def op_issue(self, debtor: str, rid: str, holder: str, amount: int, term: int) -> None:
        args = {
            "receivable_id": rid,
            "holder": holder,
            "amount": amount + 1,
            "maturity_height": self.chain.height + 1 + term,
            "documents": [INVOICE],
            "grace_blocks": 2,
        }
        self.send(debtor, "receivable", "issue", args)

    def pick_receivable(self, index: int) -> tuple[str, dict[str, Any] | None]:
        receivables = self.receivables()
        if not receivables:
            return "R0", None
        rid = sorted(receivables)[index % len(receivables)]
        return rid, receivables[rid]

    def _answer(self, method: str, index: int, right: bool) -> None:
        rid, record = self.pick_receivable(index)
        signer = record["holder"] if record and right else "s3"
        self.send(signer, "receivable", method, {"receivable_id": rid})

    def op_accept(self, index: int, right: bool) -> None:
        self._answer("accept", index, right)

    def op_reject(self, index: int, right: bool) -> None:
        self._answer("reject", index, right)

    def op_split(self, index: int, to: str, amount: int, right: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        part_id, found = picked
        signer = found["holder"] if right else to
        args = {"part_id": part_id, "to": to, "amount": 1 + amount % found["amount"]}
        self.send(signer, "receivable", "split_transfer", args)

    def op_offer(self, index: int, bank: str, price: int, right: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        part_id, found = picked
        signer = found["holder"] if right else bank
        args = {"part_id": part_id, "bank": bank, "price": 1 + price % found["amount"]}
        self.send(signer, "receivable", "offer_finance", args)

    def op_finance(self, index: int, bank: str, price: int, take_offer: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        part_id, found = picked
        offer = found["offer"]
        if take_offer and offer is not None:
            bank, price = offer["bank"], offer["price"] - 1
        args = {"part_id": part_id, "bank": bank, "price": price + 1}
        receipt = self.send(bank, "receivable", "finance", args)
        if found["status"] == "financed":
            assert receipt.code == "already_financed"
        if receipt.ok:
            assert part_id not in self.financings, f"{part_id} financed twice"
            self.financings[part_id] = bank

    def op_repay(self, index: int, right: bool) -> None:
        rid, record = self.pick_receivable(index)
        signer = record["debtor"] if record and right else "s1"
        self.send(signer, "receivable", "repay", {"receivable_id": rid})

    def op_overdue(self, index: int, signer: str) -> None:
        rid, _ = self.pick_receivable(index)
        self.send(signer, "receivable", "mark_overdue", {"receivable_id": rid})

    def op_transfer(self, source: str, target: str, amount: int) -> None:
        self.send(source, "asset", "transfer", {"to": target, "amount": amount + 1})

    def op_mint(self, amount: int) -> None:
        self.send("central", "asset", "issue", {"amount": amount + 1})

    def op_document(self, index: int, signer: str, name: str) -> None:
        rid, _ = self.pick_receivable(index)
        document = f"{name}:{DIGEST[:-2]}{index % 256:02x}"
        args = {"receivable_id": rid, "document": document}
        self.send(signer, "receivable", "add_document", args)

    def op_wait(self, blocks: int) -> None:
        for _ in range(blocks):
            self.chain.block()

    # --------------------------------------------------------------- invariants

    def check(self) -> None:
        parts = self.parts()
        for rid, record in self.receivables().items():
            anchored = self.documents.setdefault(rid, record["documents"])
            assert record["documents"][: len(anchored)] == anchored  # only ever appended
            assert 1 <= len(record["documents"]) <= DOCUMENTS_MAX
            self.documents[rid] = record["documents"]
            listed = record["parts"]
            assert len(set(listed)) == len(listed)
            assert all(parts[p]["receivable"] == rid for p in listed)
            if record["status"] in ("issued", "rejected"):
                assert listed == []
                continue
            if record["amount"] is None:  # a committed face value: one part, passed whole
                assert len(listed) == 1 and parts[listed[0]]["amount"] is None
            else:
                assert sum(parts[p]["amount"] for p in listed) == record["amount"]
            for p in listed:
                assert parts[p]["debtor"] == record["debtor"] != parts[p]["holder"]
                assert parts[p]["maturity_height"] == record["maturity_height"]
                assert parts[p]["amount"] is None or parts[p]["amount"] >= 1
        assert len(parts) == sum(len(r["parts"]) for r in self.receivables().values())
        for part_id, found in parts.items():
            assert isinstance(found["holder"], str)  # exactly one holder
            if part_id in self.financings:
                assert found["status"] in ("financed", "overdue", "settled")
                assert found["holder"] == found["financed_by"] == self.financings[part_id]
            else:
                assert found["status"] != "financed"
        balances = self.balances()
        assert all(value >= 0 for value in balances.values())
        assert sum(balances.values()) == self.chain.engine.query("asset", "supply/CNY")


@settings(max_examples=60, deadline=None)
@given(st.lists(OPERATION, min_size=10, max_size=40))
def test_random_histories_keep_every_invariant(operations: list[tuple[Any, ...]]) -> None:
    history = History()
    history.check()
    for operation in operations:
        history.apply(operation)
        history.check()


@settings(max_examples=60, deadline=None)
@given(BUSY)
def test_busy_histories_keep_every_invariant(operations: list[tuple[Any, ...]]) -> None:
    history = History()
    for operation in operations:
        history.apply(operation)
        history.check()


def test_the_busy_histories_reach_every_operation() -> None:
    """A fixed history through every method, so the property tests are known to exercise
    successful financing and repayment, not only refusals."""
    history = History()
    for operation in [
        ("issue", "carmaker", "R0", "s1", 99_999, 8),
        ("accept", 0, True),
        ("split", 0, "s2", 40_000, True),
        ("offer", 1, "bankA", 38_000, True),
        ("finance", 1, "bankB", 0, True),
        ("finance", 1, "bankB", 0, True),
        ("wait", 8),
        ("repay", 0, True),
    ]:
        history.apply(operation)
        history.check()
    assert {"issue", "accept", "split_transfer", "offer_finance", "finance", "repay"} <= (
        history.succeeded
    )
    assert history.financings == {"R0#1": "bankA"}


if __name__ == "__main__":
    print(worked_example_markdown())
