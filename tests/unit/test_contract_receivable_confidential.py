"""Confidential receivables: sealed commercial terms and financing, through the real engine.

A receivable's terms (goods, unit prices, contract terms) are a sealed `vault` record that the
debtor, the holder and the regulator open; a financing's price and discount rate are a sealed
record the holder, the bank and the regulator open, and the bank pays off the chain. The
public part (parties, face value, parts, status, who financed) keeps every invariant: the
property tests of test_contract_receivable run again with confidential issues, offers and
financings mixed in. Planted plaintext markers never appear in state, events or results.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.execution.engine import Receipt
from consortia.privacy.envelope import ESCROW_PARTY, decode_sealed, open_sealed
from consortia.types.encoding import encode
from tests.unit.test_contract_governance import executed, propose, send, snapshot
from tests.unit.test_contract_receivable import (
    BUSY,
    INVOICE,
    OPERATION,
    PEOPLE,
    PROPERTY_ACCOUNTS,
    TRADE,
    History,
    banks,
    debtors,
    mostly_right,
    small,
    who,
)
from tests.vault_helpers import CONTRACTS, Sealing, sealing

MARKERS = ("MARKER-GOODS-8c1f", "MARKER-PRICE-77d2", "MARKER-RATE-0be5")
GOODS_TERMS = {"goods": MARKERS[0], "unit_price": 31_250, "contract": "supply 2024/17"}
FINANCING = {"price": 29_822_466, "note": MARKERS[1], "rate": MARKERS[2]}


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, receipt
    return receipt


def code(receipt: Receipt) -> str:
    assert not receipt.ok, receipt
    return receipt.code


def call(built: Sealing, sender: str, method: str, args: dict[str, Any]) -> Receipt:
    return send(built.chain, sender, "receivable", method, args)


def issue_args(**extra: Any) -> dict[str, Any]:
    return {
        "receivable_id": "INV-1",
        "holder": "tier1",
        "amount": 100_000_000,
        "maturity_height": 80,
        "documents": [INVOICE],
        "kind": "goods",
        **extra,
    }


def seal_policy(
    built: Sealing, terms: str = "sealed", kind: str = "goods", face_value: str = "public"
) -> None:
    executed(
        built.chain,
        "set_confidentiality_policy",
        receivable_kind=kind,
        terms=terms,
        face_value=face_value,
    )


def everything_public(built: Sealing, receipts: list[Receipt]) -> bytes:
    """Every byte the chain shows: all state, and every receipt (events and results)."""
    engine = built.chain.engine
    state = b"".join(
        key + (engine.state.get(key) or b"") for key in engine.state.keys_with_prefix(b"")
    )
    shown = [encode(r.canonical(0, index)) for index, r in enumerate(receipts)]
    return state + b"".join(shown)


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_a_confidential_receivable_from_issue_to_repayment(suite_name: str) -> None:
    built = sealing(suite_name=suite_name)
    receipts: list[Receipt] = []
    seal_policy(built)
    # The debtor seals the commercial terms for itself and the holder (and the regulator).
    receipts.append(ok(built.put("carmaker", "TERMS-1", GOODS_TERMS, ["carmaker", "tier1"])))
    assert code(call(built, "carmaker", "issue", issue_args())) == "terms_required"
    receipts.append(ok(call(built, "carmaker", "issue", issue_args(terms="TERMS-1"))))
    record = built.chain.engine.query("receivable", "receivable/INV-1")
    assert record["terms"] == {
        "record": "TERMS-1",
        "commitment": built.stored("TERMS-1")["commitment"],
    }
    assert receipts[-1].events[0].fields["terms"] == "TERMS-1"
    receipts.append(ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"})))
    split = {"part_id": "INV-1#0", "to": "tier2", "amount": 30_000_000}
    receipts.append(ok(call(built, "tier1", "split_transfer", split)))
    # The holder seals the financing terms for itself and the bank.
    receipts.append(ok(built.put("tier1", "FIN-1", FINANCING, ["tier1", "bank", "carmaker"])))
    public_offer = {"part_id": "INV-1#0", "bank": "bank", "price": 29_822_466}
    assert code(call(built, "tier1", "offer_finance", public_offer)) == "terms_confidential"
    offer = {"part_id": "INV-1#0", "bank": "bank", "financing_terms": "FIN-1"}
    receipts.append(ok(call(built, "tier1", "offer_finance", offer)))
    assert receipts[-1].events[0].fields == {
        "part": "INV-1#0",
        "holder": "tier1",
        "bank": "bank",
        "terms": "FIN-1",
    }
    balances = {a: _balance(built, a) for a in ("tier1", "bank")}
    assert code(call(built, "bank", "finance", public_offer)) == "terms_confidential"
    assert code(call(built, "bank2", "finance", {**offer, "bank": "bank2"})) == (
        "no_matching_offer"
    )
    assert code(call(built, "carmaker", "finance", offer)) == "not_bank"
    receipts.append(ok(call(built, "bank", "finance", offer)))
    assert [e.name for e in receipts[-1].events] == ["financed"]  # no asset transfer
    assert {a: _balance(built, a) for a in ("tier1", "bank")} == balances
    part = built.chain.engine.query("receivable", "part/INV-1#0")
    assert part["holder"] == part["financed_by"] == "bank"
    assert part["status"] == "financed" and part["settlement"] == "off_chain"
    assert part["financing_terms"] == "FIN-1" and "price" not in part
    # Financed once: neither bank takes it again, the seller cannot offer it again, and the
    # sealed terms serve no other receivable.
    assert code(call(built, "bank", "finance", offer)) == "already_financed"
    assert code(call(built, "bank2", "finance", {**offer, "bank": "bank2"})) == "already_financed"
    assert code(call(built, "tier1", "offer_finance", offer)) == "not_holder"
    again = issue_args(receivable_id="INV-2", terms="TERMS-1")
    assert code(call(built, "carmaker", "issue", again)) == "terms_in_use"
    # Every reader, and the regulator through the escrow key, opens the sealed records.
    for record_id, value, readers in (
        ("TERMS-1", GOODS_TERMS, ("carmaker", "tier1", ESCROW_PARTY)),
        ("FIN-1", FINANCING, ("tier1", "bank", "carmaker", ESCROW_PARTY)),
    ):
        sealed = decode_sealed(built.stored(record_id)["sealed"])
        for party in readers:
            assert open_sealed(built.suite, sealed, party, built.private_key(party)).value == value
    # At maturity the debtor repays the face values, in public.
    while built.chain.height < 79:
        built.chain.block()
    receipts.append(ok(call(built, "carmaker", "repay", {"receivable_id": "INV-1"})))
    assert receipts[-1].result == 100_000_000
    assert _balance(built, "bank") == balances["bank"] + 70_000_000
    assert _balance(built, "tier2") == 30_000_000
    # No plaintext anywhere the chain shows it.
    public = everything_public(built, receipts)
    for marker in MARKERS:
        assert marker.encode() not in public
        assert marker.encode().hex().encode() not in public
    assert b"29822466" not in public and (29_822_466).to_bytes(4, "big") not in public


FACE_VALUE = 87_654_321  # planted: never on the chain where the face value is committed


def test_a_committed_face_value_is_only_in_the_sealed_terms() -> None:
    built = sealing(suite_name="gm")
    receipts: list[Receipt] = []
    seal_policy(built, kind="hidden", face_value="committed")
    value = {**GOODS_TERMS, "amount": FACE_VALUE, "currency": "CNY"}
    receipts.append(ok(built.put("carmaker", "T-H", value, ["carmaker", "tier1"])))
    hidden = issue_args(kind="hidden", terms="T-H")
    assert code(call(built, "carmaker", "issue", hidden)) == "face_value_committed"
    del hidden["amount"]
    no_terms = {key: value for key, value in hidden.items() if key != "terms"}
    assert code(call(built, "carmaker", "issue", no_terms)) == "terms_required"
    receipts.append(ok(call(built, "carmaker", "issue", hidden)))
    assert built.chain.engine.query("receivable", "receivable/INV-1")["amount"] is None
    receipts.append(ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"})))
    split = {"part_id": "INV-1#0", "to": "tier2", "amount": 1}
    assert code(call(built, "tier1", "split_transfer", split)) == "face_value_committed"
    del split["amount"]
    receipts.append(ok(call(built, "tier1", "split_transfer", split)))  # the whole part
    receipts.append(ok(built.put("tier2", "FIN-H", FINANCING, ["tier2", "bank"])))
    offer = {"part_id": "INV-1#0", "bank": "bank", "financing_terms": "FIN-H"}
    public = {"part_id": "INV-1#0", "bank": "bank", "price": 1}
    assert code(call(built, "tier2", "offer_finance", public)) == "terms_confidential"
    receipts.append(ok(call(built, "tier2", "offer_finance", offer)))
    receipts.append(ok(call(built, "bank", "finance", offer)))
    assert code(call(built, "bank2", "finance", {**offer, "bank": "bank2"})) == "already_financed"
    confirm = {"part_id": "INV-1#0"}
    assert code(call(built, "bank", "confirm_repaid", confirm)) == "not_matured"
    while built.chain.height < 79:
        built.chain.block()
    assert code(call(built, "carmaker", "repay", {"receivable_id": "INV-1"})) == "repaid_off_chain"
    assert code(call(built, "tier2", "confirm_repaid", confirm)) == "not_holder"
    receipts.append(ok(call(built, "bank", "confirm_repaid", confirm)))
    assert [e.name for e in receipts[-1].events] == ["repayment_confirmed", "settled"]
    assert built.chain.engine.query("receivable", "receivable/INV-1")["status"] == "settled"
    assert code(call(built, "bank", "confirm_repaid", confirm)) == "already_settled"
    public_part = _public_receivable(built)
    assert code(call(built, "tier1", "confirm_repaid", {"part_id": public_part})) == (
        "not_committed"
    )
    shown = everything_public(built, receipts)
    for planted in (str(FACE_VALUE).encode(), FACE_VALUE.to_bytes(4, "big"), MARKERS[0].encode()):
        assert planted not in shown
    # The regulator reads the face value through the escrow key.
    sealed = decode_sealed(built.stored("T-H")["sealed"])
    escrow = built.private_key(ESCROW_PARTY)
    assert open_sealed(built.suite, sealed, ESCROW_PARTY, escrow).value["amount"] == FACE_VALUE


def _public_receivable(built: Sealing) -> str:
    args = issue_args(receivable_id="PUB-1", kind="general", maturity_height=built.chain.height + 5)
    ok(call(built, "carmaker", "issue", args))
    ok(call(built, "tier1", "accept", {"receivable_id": "PUB-1"}))
    return "PUB-1#0"


def test_a_planted_marker_is_found_when_it_is_public() -> None:
    """The marker search is not vacuous: a marker written in public is found."""
    built = sealing()
    receipt = ok(call(built, "carmaker", "issue", issue_args(order_ref=MARKERS[0], kind="general")))
    assert MARKERS[0].encode() in everything_public(built, [receipt])


def test_sealed_terms_must_be_the_signer_s_and_readable_by_the_parties() -> None:
    built = sealing()
    ok(built.put("tier1", "BY-HOLDER", GOODS_TERMS, ["carmaker", "tier1"]))
    ok(built.put("carmaker", "NOT-HOLDER", GOODS_TERMS, ["carmaker"]))
    before = snapshot(built.chain)
    for terms, expected in (
        ("NONE", "unknown_record"),
        ("BY-HOLDER", "not_record_owner"),
        ("NOT-HOLDER", "terms_not_readable"),
        ("bad id!", "bad_argument"),
    ):
        assert code(call(built, "carmaker", "issue", issue_args(terms=terms))) == expected
    assert snapshot(built.chain) == before
    ok(call(built, "carmaker", "issue", issue_args(kind="general")))
    ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"}))
    ok(built.put("tier1", "FIN-NO-BANK", FINANCING, ["tier1", "carmaker"]))
    offer = {"part_id": "INV-1#0", "bank": "bank", "financing_terms": "FIN-NO-BANK"}
    assert code(call(built, "tier1", "offer_finance", offer)) == "terms_not_readable"
    # Without a policy both paths are open: the public price as before.
    ok(call(built, "tier1", "offer_finance", {"part_id": "INV-1#0", "bank": "bank", "price": 9}))
    ok(call(built, "bank", "finance", {"part_id": "INV-1#0", "bank": "bank", "price": 9}))


def test_one_sealed_financing_finances_one_part() -> None:
    """A holder offering two parts under one sealed record: the bank takes one, not both."""
    built = sealing()
    ok(call(built, "carmaker", "issue", issue_args(kind="general")))
    ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"}))
    split = {"part_id": "INV-1#0", "to": "tier2", "amount": 10}
    ok(call(built, "tier1", "split_transfer", split))
    ok(call(built, "tier2", "split_transfer", {**split, "part_id": "INV-1#1", "to": "tier1"}))
    ok(built.put("tier1", "FIN-1", FINANCING, ["tier1", "bank"]))
    ok(built.put("bank", "BY-BANK", FINANCING, ["tier1", "bank"]))
    for part_id in ("INV-1#0", "INV-1#1"):
        offer = {"part_id": part_id, "bank": "bank", "financing_terms": "FIN-1"}
        ok(call(built, "tier1", "offer_finance", offer))
    by_bank = {"part_id": "INV-1#0", "bank": "bank", "financing_terms": "BY-BANK"}
    assert code(call(built, "tier1", "offer_finance", by_bank)) == "not_record_owner"
    assert code(call(built, "bank", "finance", by_bank)) == "no_matching_offer"
    ok(call(built, "bank", "finance", {**by_bank, "financing_terms": "FIN-1"}))
    second = {"part_id": "INV-1#1", "bank": "bank", "financing_terms": "FIN-1"}
    assert code(call(built, "bank", "finance", second)) == "terms_in_use"
    assert built.chain.engine.query("receivable", "part/INV-1#1")["status"] == "held"


def test_only_governance_sets_a_confidentiality_policy() -> None:
    built = sealing((), escrow=False)
    policy = {"receivable_kind": "goods", "terms": "sealed"}
    assert code(call(built, "alice", "set_confidentiality", policy)) == "not_authorised"
    assert (
        code(
            propose(
                built.chain, "alice", "set_confidentiality_policy", **{**policy, "terms": "secret"}
            )
        )
        == "bad_argument"
    )
    seal_policy(built)
    assert built.chain.engine.query("receivable", "confidentiality") == {
        "goods": {"terms": "sealed", "face_value": "public"}
    }
    committed_without_sealing = {"receivable_kind": "goods", "terms": "optional"}
    receipt = propose(
        built.chain,
        "alice",
        "set_confidentiality_policy",
        **committed_without_sealing,
        face_value="committed",
    )
    assert code(receipt) == "bad_argument"
    seal_policy(built, "optional")
    assert built.chain.engine.query("receivable", "confidentiality") == {}


def _balance(built: Sealing, account: str) -> int:
    return int(built.chain.engine.query("asset", f"balance/CNY/{account}") or 0)


# ---------------------------------------------------------------------- property tests


class ConfidentialHistory(History):
    """The random histories of test_contract_receivable, on a chain with the vault, every
    party's encryption key, the escrow key and a policy sealing "goods" receivables."""

    def __init__(self) -> None:
        accounts = {
            **PROPERTY_ACCOUNTS,
            "alice": ("bank-0", 0),
            "bob": ("bank-1", 0),
            "carol": ("bank-2", 0),
            "dave": ("bank-3", 0),
            "reg": ("regulator", 0),
        }
        self.sealing = sealing(tuple(PEOPLE), contracts=CONTRACTS, accounts=accounts)
        seal_policy(self.sealing)
        seal_policy(self.sealing, kind="hidden", face_value="committed")
        self.chain = self.sealing.chain
        self.financings: dict[str, str] = {}
        self.documents: dict[str, list[dict[str, Any]]] = {}
        self.succeeded: set[str] = set()
        self.records = count()

    def send(self, sender: str, contract: str, method: str, args: dict[str, Any]) -> Receipt:
        """Every refusal is a stable code: a contract fault is a bug, whatever the input."""
        receipt = super().send(sender, contract, method, args)
        assert receipt.code != "contract_fault", (method, args, receipt)
        return receipt

    def sealed_record(self, owner: str, value: Any, readers: list[str]) -> str:
        record_id = f"V{next(self.records)}"
        self.sealing.put(owner, record_id, value, sorted(set(readers)))
        return record_id

    def op_issue_sealed(
        self, debtor: str, rid: str, holder: str, amount: int, term: int, kind: str
    ) -> None:
        value = {"goods": MARKERS[0], "amount": amount + 1}
        terms = self.sealed_record(debtor, value, [debtor, holder])
        args = {
            "receivable_id": rid,
            "holder": holder,
            "maturity_height": self.chain.height + 1 + term,
            "documents": [INVOICE],
            "grace_blocks": 2,
            "terms": terms,
            "kind": kind,
        }
        if kind != "hidden":  # a committed face value is only in the sealed terms
            args["amount"] = amount + 1
        self.send(debtor, "receivable", "issue", args)

    def op_split(self, index: int, to: str, amount: int, right: bool) -> None:
        """A part whose amount is committed passes whole, without an amount."""
        picked = self.pick_part(index)
        if picked is not None and picked[1]["amount"] is None:
            signer = picked[1]["holder"] if right else to
            args = {"part_id": picked[0], "to": to}
            self.send(signer, "receivable", "split_transfer", args)
            return
        super().op_split(index, to, amount, right)

    def op_offer(self, index: int, bank: str, price: int, right: bool) -> None:
        """A public price for a part whose amount is committed (always refused)."""
        picked = self.pick_part(index)
        if picked is not None and picked[1]["amount"] is None:
            signer = picked[1]["holder"] if right else bank
            args = {"part_id": picked[0], "bank": bank, "price": price + 1}
            receipt = self.send(signer, "receivable", "offer_finance", args)
            assert not receipt.ok
            return
        super().op_offer(index, bank, price, right)

    def op_confirm(self, index: int, right: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        signer = picked[1]["holder"] if right else "s3"
        self.send(signer, "receivable", "confirm_repaid", {"part_id": picked[0]})

    def op_offer_sealed(self, index: int, bank: str, right: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        part_id, found = picked
        signer = found["holder"] if right else bank
        terms = self.sealed_record(signer, {"price": MARKERS[1]}, [signer, bank])
        args = {"part_id": part_id, "bank": bank, "financing_terms": terms}
        self.send(signer, "receivable", "offer_finance", args)

    def op_finance(self, index: int, bank: str, price: int, take_offer: bool) -> None:
        """A bank's public financing; a sealed offer has no public price to take."""
        picked = self.pick_part(index)
        offer = None if picked is None else picked[1]["offer"]
        if offer is not None and "terms" in offer:
            take_offer = False
        super().op_finance(index, bank, price, take_offer)

    def op_finance_sealed(self, index: int, bank: str, take_offer: bool) -> None:
        picked = self.pick_part(index)
        if picked is None:
            return
        part_id, found = picked
        offer = found["offer"]
        terms = "V0"
        if take_offer and offer is not None:
            bank, terms = offer["bank"], offer.get("terms", terms)
        args = {"part_id": part_id, "bank": bank, "financing_terms": terms}
        receipt = self.send(bank, "receivable", "finance", args)
        if found["status"] == "financed":
            assert receipt.code == "already_financed"
        if receipt.ok:
            assert part_id not in self.financings, f"{part_id} financed twice"
            self.financings[part_id] = bank

    def check(self) -> None:
        super().check()
        parts = self.parts()
        served: dict[str, str] = {}
        for part_id, found in parts.items():
            if "financing_terms" in found:
                assert found["settlement"] == "off_chain" and "price" not in found
                record_id = found["financing_terms"]
                assert record_id not in served, f"{record_id} finances two parts"
                served[record_id] = part_id
                use = self.chain.engine.query("receivable", f"terms_use/{record_id}")
                assert use == {"part": part_id}
            if found["status"] == "financed" and "financing_terms" not in found:
                assert isinstance(found["price"], int)
        for record in self.receivables().values():
            if record["kind"] in ("goods", "hidden"):
                assert "terms" in record  # the policy seals every goods receivable
            assert (record["amount"] is None) == (record["kind"] == "hidden")
            if record["amount"] is None and record["status"] == "settled":
                assert all(parts[p]["repayment"] == "off_chain" for p in record["parts"])


KINDS = ["general", "goods", "hidden"]  # no policy; sealed terms; and a committed face value
SEALED_OPERATIONS = st.one_of(
    st.tuples(
        st.just("issue_sealed"),
        who,
        st.sampled_from(["R0", "R1", "R2"]),
        who,
        small,
        st.integers(1, 12),
        st.sampled_from(KINDS),
    ),
    st.tuples(st.just("offer_sealed"), small, st.one_of(banks, who), mostly_right),
    st.tuples(st.just("finance_sealed"), small, who, mostly_right),
    st.tuples(st.just("confirm"), small, mostly_right),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(OPERATION, SEALED_OPERATIONS), min_size=10, max_size=30))
def test_random_confidential_histories_keep_every_invariant(
    operations: list[tuple[Any, ...]],
) -> None:
    history = ConfidentialHistory()
    history.check()
    for operation in operations:
        history.apply(operation)
        history.check()


BUSY_SEALED = st.tuples(
    st.lists(
        st.tuples(
            st.just("issue_sealed"),
            debtors,
            st.sampled_from(["R0", "R1"]),
            st.just("s1"),
            small,
            st.integers(10, 30),
            st.sampled_from(KINDS),
        ).flatmap(lambda issue: st.just([issue, ("accept", 0, True), ("accept", 1, True)])),
        min_size=1,
        max_size=2,
    ).map(lambda groups: [op for group in groups for op in group]),
    st.lists(st.one_of(TRADE, SEALED_OPERATIONS), min_size=10, max_size=30),
    st.lists(st.tuples(st.just("confirm"), small, mostly_right), max_size=4),
).map(
    lambda parts: [
        *parts[0],
        *parts[1],
        ("wait", 40),
        ("repay", 0, True),
        ("repay", 1, True),
        *parts[2],
    ]
)


@settings(max_examples=60, deadline=None)
@given(BUSY_SEALED)
def test_busy_confidential_histories_keep_every_invariant(
    operations: list[tuple[Any, ...]],
) -> None:
    history = ConfidentialHistory()
    for operation in operations:
        history.apply(operation)
        history.check()


def test_the_confidential_histories_reach_every_operation() -> None:
    history = ConfidentialHistory()
    for operation in [
        ("issue_sealed", "carmaker", "R0", "s1", 99_999, 12, "goods"),
        ("accept", 0, True),
        ("split", 0, "s2", 40_000, True),
        ("offer", 1, "bankA", 38_000, True),  # a goods receivable: refused, sealed prices
        ("offer_sealed", 1, "bankA", True),
        ("finance_sealed", 1, "bankB", True),
        ("finance_sealed", 1, "bankB", True),
        ("wait", 12),
        ("repay", 0, True),
    ]:
        history.apply(operation)
        history.check()
    assert {"issue", "accept", "split_transfer", "offer_finance", "finance", "repay"} <= (
        history.succeeded
    )
    assert history.financings == {"R0#1": "bankA"}
    assert BUSY is not None  # the public busy histories run in test_contract_receivable
