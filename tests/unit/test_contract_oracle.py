"""The `oracle` contract and the financing requirement of `receivable`: governance registers
fact kinds (k of n oracles), a fact becomes final once k distinct current oracles attested
the same value, conflicts are recorded for the regulator, and a receivable of a kind that
requires a fact is not financed until that fact is final with the required value.

Everything runs through the real engine and, for governance, through passed proposals; a
model-based property test checks k-of-n, duplicates and conflicts over random attestations.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.execution.contract import Contract
from consortia.execution.contracts import oracle_state
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.governance import Governance
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.oracle import Oracle
from consortia.execution.contracts.receivable import Receivable
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.contracts.system import System
from consortia.execution.engine import Receipt
from consortia.types.genesis import Genesis
from tests.execution_helpers import Ledger, make_ledger
from tests.unit.test_contract_governance import executed, names, propose, send, snapshot

COURIERS = ["courier1", "courier2", "courier3"]
ACCOUNTS = {
    "alice": ("bank-0", 0),
    "bob": ("bank-1", 0),
    "carol": ("bank-2", 0),
    "dave": ("bank-3", 0),
    "reg": ("regulator", 0),
    "courier1": ("bank-1", 0),
    "courier2": ("bank-2", 0),
    "courier3": ("bank-3", 0),
    "customs": ("bank-3", 0),
    "outsider": ("bank-2", 0),
    "carmaker": ("bank-1", 300_000_000),
    "tier1": ("bank-2", 0),
    "bank": ("bank-3", 300_000_000),
}
CONTRACTS: list[type[Contract]] = [
    System,
    Governance,
    Identity,
    Asset,
    Regulator,
    Oracle,
    Receivable,
]
DIGEST = "ab" * 32


def ledger(contracts: list[type[Contract]] = CONTRACTS) -> Ledger:
    return make_ledger(contracts, ACCOUNTS)


def delivery_kind(chain: Ledger, oracles: list[str] = COURIERS, threshold: int = 2) -> None:
    executed(chain, "set_oracle_kind", fact_kind="delivery", oracles=oracles, threshold=threshold)


def attest(chain: Ledger, oracle: str, value: str, subject: str = "PO-7") -> Receipt:
    args = {"fact_kind": "delivery", "subject": subject, "value": value}
    return send(chain, oracle, "oracle", "attest", args)


def fact(chain: Ledger, subject: str = "PO-7") -> dict[str, Any]:
    record = oracle_state.read_fact(chain.engine.query, "delivery", subject)
    assert record is not None
    return record


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, receipt
    return receipt


# ---------------------------------------------------------------------- registration


def test_governance_registers_a_fact_kind_with_k_of_n() -> None:
    chain = ledger()
    delivery_kind(chain, ["courier3", "courier1", "courier2"])
    assert chain.engine.query("oracle", "kind/delivery") == {
        "oracles": COURIERS,
        "threshold": 2,
    }
    assert chain.engine.query("oracle", "kind_names") == ["delivery"]
    intervention = chain.engine.query("governance", "intervention/1")
    assert intervention["kind"] == "set_oracle_kind"
    assert intervention["args"] == {"fact_kind": "delivery", "oracles": COURIERS, "threshold": 2}
    # Replacing the set and the threshold is the same kind.
    delivery_kind(chain, ["courier1", "customs"], threshold=1)
    assert chain.engine.query("oracle", "kind/delivery") == {
        "oracles": ["courier1", "customs"],
        "threshold": 1,
    }
    assert chain.engine.query("oracle", "kind_names") == ["delivery"]


def test_fact_kind_proposals_are_checked_and_refusals_change_nothing() -> None:
    chain = ledger()
    base = {"fact_kind": "delivery", "oracles": COURIERS, "threshold": 2}
    before = snapshot(chain)
    for change, expected in (
        ({"threshold": 0}, "bad_argument"),
        ({"threshold": 4}, "bad_threshold"),
        ({"oracles": []}, "bad_argument"),
        ({"oracles": ["courier1", "courier1"]}, "bad_argument"),
        ({"oracles": [f"o{n}" for n in range(oracle_state.ORACLES_MAX + 1)]}, "bad_argument"),
        ({"oracles": ["courier1", "ghost"]}, "unknown_account"),
        ({"fact_kind": "Delivery"}, "bad_argument"),
        ({"fact_kind": "x" * 33}, "bad_argument"),
    ):
        receipt = propose(chain, "alice", "set_oracle_kind", **{**base, **change})
        assert receipt.code == expected, (change, receipt)
    assert propose(chain, "alice", "remove_oracle_kind", fact_kind="delivery").code == (
        "unknown_fact_kind"
    )
    requirement = {"receivable_kind": "goods", "fact_kind": "delivery", "value": "delivered"}
    assert propose(chain, "alice", "set_financing_requirement", **requirement).code == (
        "unknown_fact_kind"
    )
    assert propose(chain, "alice", "clear_financing_requirement", receivable_kind="goods").code == (
        "unknown_requirement"
    )
    assert snapshot(chain) == before


class CrowdedOracle(Oracle):
    """The oracle contract with every fact kind it may hold already registered."""

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        names = [f"kind{n}" for n in range(oracle_state.FACT_KINDS_MAX)]
        return {oracle_state.KIND_NAMES: names}


def test_fact_kinds_are_bounded() -> None:
    chain = ledger([*CONTRACTS[:-2], CrowdedOracle, Receivable])
    receipt = propose(chain, "alice", "set_oracle_kind", fact_kind="one_more", oracles=COURIERS,
                      threshold=1)  # fmt: skip
    assert receipt.code == "too_many_fact_kinds"
    executed(chain, "set_oracle_kind", fact_kind="kind0", oracles=COURIERS, threshold=1)


def test_only_governance_registers_oracles_and_requirements() -> None:
    chain = ledger()
    config = {"fact_kind": "delivery", "oracles": COURIERS, "threshold": 1}
    assert send(chain, "alice", "oracle", "set_kind", config).code == "not_authorised"
    assert send(chain, "alice", "oracle", "remove_kind", {"fact_kind": "x"}).code == (
        "not_authorised"
    )
    delivery_kind(chain)
    requirement = {"receivable_kind": "goods", "fact_kind": "delivery", "value": "delivered"}
    assert send(chain, "carmaker", "receivable", "set_requirement", requirement).code == (
        "not_authorised"
    )
    assert send(
        chain, "alice", "receivable", "clear_requirement", {"receivable_kind": "goods"}
    ).code == ("not_authorised")


# ---------------------------------------------------------------------- attestations


def test_a_fact_is_final_once_k_distinct_oracles_agree() -> None:
    chain = ledger()
    delivery_kind(chain)  # 2 of 3
    first = ok(attest(chain, "courier1", "delivered"))
    assert first.result == {"status": "pending", "value": None, "count": 1, "threshold": 2}
    # The same oracle again counts once.
    assert attest(chain, "courier1", "delivered").code == "already_attested"
    assert fact(chain)["status"] == "pending" and len(fact(chain)["attestations"]) == 1
    second = ok(attest(chain, "courier2", "delivered"))
    assert second.result == {"status": "final", "value": "delivered", "count": 2, "threshold": 2}
    assert names(second) == ["attested", "fact_final"]
    final = fact(chain)
    assert (final["status"], final["value"], final["oracles"]) == (
        "final",
        "delivered",
        ["courier1", "courier2"],
    )
    assert final["final_height"] == chain.height and final["conflicts"] == []
    # A third agreeing oracle is recorded; the fact stays as it was.
    third = ok(attest(chain, "courier3", "delivered"))
    assert third.result["count"] == 3 and names(third) == ["attested"]
    assert fact(chain)["oracles"] == ["courier1", "courier2"]
    assert oracle_state.final_value(chain.engine.query, "delivery", "PO-7") == "delivered"
    assert oracle_state.final_value(chain.engine.query, "delivery", "PO-8") is None


def test_attestations_from_others_and_malformed_ones_are_refused() -> None:
    chain = ledger()
    delivery_kind(chain)
    before = snapshot(chain)
    assert attest(chain, "outsider", "delivered").code == "not_oracle"
    assert attest(chain, "alice", "delivered").code == "not_oracle"
    args = {"fact_kind": "customs", "subject": "PO-7", "value": "cleared"}
    assert send(chain, "courier1", "oracle", "attest", args).code == "unknown_fact_kind"
    for value, subject in (
        ("x" * (oracle_state.FACT_VALUE_LENGTH_MAX + 1), "PO-7"),
        ("line\nbreak", "PO-7"),
        ("", "PO-7"),
        ("delivered", "PO 7"),
        ("delivered", "P" * (oracle_state.SUBJECT_LENGTH_MAX + 1)),
    ):
        assert attest(chain, "courier1", value, subject).code == "bad_argument", (value, subject)
    assert snapshot(chain) == before


def test_a_removed_oracle_no_longer_attests_nor_counts() -> None:
    chain = ledger()
    delivery_kind(chain)
    ok(attest(chain, "courier1", "delivered"))
    delivery_kind(chain, ["courier2", "courier3", "customs"])  # courier1 is removed
    assert attest(chain, "courier1", "delivered").code == "not_oracle"
    # courier1's attestation stays on record but no longer counts towards k.
    assert ok(attest(chain, "courier2", "delivered")).result["status"] == "pending"
    assert fact(chain)["status"] == "pending"
    final = ok(attest(chain, "customs", "delivered"))
    assert final.result["status"] == "final"
    assert fact(chain)["oracles"] == ["courier2", "customs"]


def test_conflicting_attestations_are_recorded_for_the_regulator() -> None:
    chain = ledger()
    delivery_kind(chain)
    ok(attest(chain, "courier1", "delivered"))
    disputed = ok(attest(chain, "courier2", "lost"))
    assert names(disputed) == ["attestation_conflict", "attested"]
    assert disputed.result["status"] == "pending"
    conflict = chain.engine.query("oracle", "conflict/0")
    assert conflict == {
        "kind": "delivery",
        "subject": "PO-7",
        "oracle": "courier2",
        "value": "lost",
        "against": ["delivered"],
        "fact_status": "pending",
        "height": chain.height,
    }
    # A conflict does not block k agreeing oracles; joining a value already attested is no
    # new conflict.
    agreeing = ok(attest(chain, "courier3", "delivered"))
    assert agreeing.result["status"] == "final" and "attestation_conflict" not in names(agreeing)
    # An oracle that changes its mind is a conflict too; its first word still stands.
    changed = ok(attest(chain, "courier1", "lost"))
    # (count: the current oracles whose first word is this value, "lost": courier2 only)
    assert changed.result == {"status": "final", "value": "delivered", "count": 1, "threshold": 2}
    assert fact(chain)["conflicts"] == [0, 1]
    assert chain.engine.query("oracle", "conflict/1")["fact_status"] == "final"
    assert oracle_state.conflict_count(chain.engine.query) == 2
    listed = ok(send(chain, "reg", "regulator", "list_conflicts", {}))
    assert [(c["n"], c["oracle"], c["value"]) for c in listed.result["conflicts"]] == [
        (0, "courier2", "lost"),
        (1, "courier1", "lost"),
    ]
    assert listed.result["next"] == 2
    page = ok(send(chain, "reg", "regulator", "list_conflicts", {"from_n": 1, "limit": 1}))
    assert [c["n"] for c in page.result["conflicts"]] == [1] and page.result["next"] == 2
    assert send(chain, "alice", "regulator", "list_conflicts", {}).code == "not_authorised"


class PresetOracle(Oracle):
    """The oracle contract with one fact kind registered at genesis (no governance needed)."""

    oracles: tuple[str, ...] = ("o0", "o1", "o2")
    threshold = 2

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        return {
            oracle_state.KIND_NAMES: ["delivery"],
            oracle_state.kind_key("delivery"): {
                "oracles": list(cls.oracles),
                "threshold": cls.threshold,
            },
        }


class FullOracle(PresetOracle):
    oracles = tuple(f"o{n:02d}" for n in range(oracle_state.ORACLES_MAX))


def test_attestations_per_fact_are_bounded() -> None:
    accounts = {name: ("bank-1", 0) for name in FullOracle.oracles}
    chain = make_ledger([FullOracle], accounts)
    txs = [
        chain.tx(name, "oracle", "attest", {"fact_kind": "delivery", "subject": "S", "value": v})
        for v in ("yes", "no")
        for name in FullOracle.oracles
    ]
    assert len(txs) == oracle_state.ATTESTATIONS_MAX
    assert all(receipt.ok for receipt in chain.block(*txs))
    extra = chain.tx("o00", "oracle", "attest", {"fact_kind": "delivery", "subject": "S",
                                                 "value": "maybe"})  # fmt: skip
    (receipt,) = chain.block(extra)
    assert receipt.code == "too_many_attestations"


# ---------------------------------------------------------------------- the model


class Model:
    """What the contract should do, written plainly: one fact per subject."""

    def __init__(self, oracles: tuple[str, ...], threshold: int) -> None:
        self.oracles, self.threshold = oracles, threshold
        self.facts: dict[str, dict[str, Any]] = {}
        self.conflicts = 0

    def attest(self, oracle: str, subject: str, value: str) -> str:
        if oracle not in self.oracles:
            return "not_oracle"
        entry = self.facts.setdefault(subject, {"attestations": [], "value": None, "conflicts": []})
        if (oracle, value) in entry["attestations"]:
            return "already_attested"
        attested = {v for _, v in entry["attestations"]}
        final = entry["value"]
        disputed = bool((attested | ({final} if final is not None else set())) - {value}) and (
            value not in attested
            or (final is not None and value != final)
            or any(who == oracle and said != value for who, said in entry["attestations"])
        )
        entry["attestations"].append((oracle, value))
        if disputed:
            entry["conflicts"].append(self.conflicts)
            self.conflicts += 1
        first: dict[str, str] = {}
        for who, said in entry["attestations"]:
            first.setdefault(who, said)
        backers = sum(1 for who in self.oracles if first.get(who) == value)
        if entry["value"] is None and backers >= self.threshold:
            entry["value"] = value
        return "ok"


ORACLE_NAMES = ("o0", "o1", "o2", "o3", "o4")  # o3 and o4 are not registered
ATTESTATION = st.tuples(
    st.sampled_from(ORACLE_NAMES), st.sampled_from(["S1", "S2"]), st.sampled_from(["a", "b", "c"])
)


@settings(max_examples=40, deadline=None)
@given(st.lists(ATTESTATION, min_size=1, max_size=24))
def test_random_attestations_follow_the_k_of_n_rules(
    attestations: list[tuple[str, str, str]],
) -> None:
    chain = make_ledger([PresetOracle], {name: ("bank-1", 0) for name in ORACLE_NAMES})
    model = Model(PresetOracle.oracles, PresetOracle.threshold)
    for oracle, subject, value in attestations:
        args = {"fact_kind": "delivery", "subject": subject, "value": value}
        (receipt,) = chain.block(chain.tx(oracle, "oracle", "attest", args))
        assert receipt.code == model.attest(oracle, subject, value)
        for name, expected in model.facts.items():
            found = oracle_state.read_fact(chain.engine.query, "delivery", name)
            assert found is not None
            said = [(a["oracle"], a["value"]) for a in found["attestations"]]
            assert said == expected["attestations"]
            assert found["value"] == expected["value"]
            assert found["status"] == ("pending" if expected["value"] is None else "final")
            assert found["conflicts"] == expected["conflicts"]
            if found["status"] == "final":
                # k distinct registered oracles whose first word was the final value.
                assert len(set(found["oracles"])) >= PresetOracle.threshold
                assert set(found["oracles"]) <= set(PresetOracle.oracles)
        assert oracle_state.conflict_count(chain.engine.query) == model.conflicts


# ---------------------------------------------------------------------- financing


def goods(chain: Ledger, receivable_id: str, **extra: Any) -> str:
    """Issue a receivable, accept it and offer its part #0 to the bank; the part's id."""
    height = chain.height
    issue = {
        "receivable_id": receivable_id,
        "holder": "tier1",
        "amount": 10_000_000,
        "maturity_height": height + 500,
        "documents": [f"invoice:{DIGEST}"],
        **extra,
    }
    ok(send(chain, "carmaker", "receivable", "issue", issue))
    ok(send(chain, "tier1", "receivable", "accept", {"receivable_id": receivable_id}))
    part = f"{receivable_id}#0"
    offer = {"part_id": part, "bank": "bank", "price": 9_900_000}
    ok(send(chain, "tier1", "receivable", "offer_finance", offer))
    return part


def finance(chain: Ledger, part: str) -> Receipt:
    return send(chain, "bank", "receivable", "finance", {"part_id": part, "bank": "bank",
                                                          "price": 9_900_000})  # fmt: skip


def require_delivery(chain: Ledger) -> None:
    delivery_kind(chain)
    executed(
        chain,
        "set_financing_requirement",
        receivable_kind="goods",
        fact_kind="delivery",
        value="delivered",
    )


def test_goods_are_financed_only_once_delivery_is_confirmed() -> None:
    chain = ledger()
    require_delivery(chain)
    assert chain.engine.query("receivable", "requirements") == {
        "goods": {"fact_kind": "delivery", "value": "delivered"}
    }
    part = goods(chain, "INV-1", kind="goods", order_ref="PO-7")
    before = snapshot(chain)
    refused = finance(chain, part)
    assert refused.code == "fact_required" and "PO-7" in refused.message
    assert snapshot(chain) == before  # no money moved, the part is still held
    ok(attest(chain, "courier1", "delivered"))
    assert finance(chain, part).code == "fact_required"  # 1 of 2 is not enough
    ok(attest(chain, "courier2", "delivered"))
    ok(finance(chain, part))
    assert chain.engine.query("receivable", f"part/{part}")["status"] == "financed"


def test_a_fact_final_with_another_value_refuses_financing() -> None:
    chain = ledger()
    require_delivery(chain)
    part = goods(chain, "INV-2", kind="goods", order_ref="PO-8")
    ok(attest(chain, "courier1", "lost", "PO-8"))
    ok(attest(chain, "courier2", "lost", "PO-8"))
    assert finance(chain, part).code == "fact_mismatch"


def test_the_order_defaults_to_the_receivable_and_other_kinds_need_nothing() -> None:
    chain = ledger()
    require_delivery(chain)
    general = goods(chain, "INV-3")  # kind "general": no requirement
    assert chain.engine.query("receivable", "receivable/INV-3")["kind"] == "general"
    ok(finance(chain, general))
    part = goods(chain, "INV-4", kind="goods")
    assert chain.engine.query("receivable", "receivable/INV-4")["order_ref"] == "INV-4"
    assert finance(chain, part).code == "fact_required"
    ok(attest(chain, "courier1", "delivered", "INV-4"))
    ok(attest(chain, "courier3", "delivered", "INV-4"))
    ok(finance(chain, part))


def test_a_required_fact_kind_is_not_removed_until_the_requirement_is_cleared() -> None:
    chain = ledger()
    require_delivery(chain)
    part = goods(chain, "INV-5", kind="goods")
    receipt = propose(chain, "alice", "remove_oracle_kind", fact_kind="delivery")
    assert receipt.code == "fact_kind_in_use"
    executed(chain, "clear_financing_requirement", receivable_kind="goods")
    assert chain.engine.query("receivable", "requirements") == {}
    executed(chain, "remove_oracle_kind", fact_kind="delivery")
    assert chain.engine.query("oracle", "kind/delivery") is None
    assert chain.engine.query("oracle", "kind_names") == []
    assert attest(chain, "courier1", "delivered", "INV-5").code == "unknown_fact_kind"
    ok(finance(chain, part))  # no requirement any more
