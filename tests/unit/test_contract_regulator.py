"""The `regulator` contract: alert rules, supervision queries, emergency freezes.

The identity contract is written separately; these tests run against a minimal stand-in with
the same state layout and freeze rules (docs/contracts-spec.md §1), and the freeze tests also
run against the real one when it is present.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from consortia.execution.contract import Context, Contract, arg_int, arg_str, method
from consortia.execution.contracts import asset, regulator, regulator_state
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.regulator import FREEZE_BLOCKS_MAX, Regulator
from consortia.execution.engine import Engine, Receipt
from consortia.execution.genesis import genesis_writes
from consortia.execution.registry import ContractRegistry
from consortia.types.genesis import Genesis, genesis_hash
from tests.execution_helpers import SUITE, Ledger, make_ledger


class StandInIdentity(Contract):
    """Member records and the freeze rules of identity, nothing else."""

    name = "identity"
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        return {
            f"member/{m.name}": {"roles": list(m.roles), "certificate_revoked": False}
            for m in genesis.members
        }

    @method("freeze_account")
    def freeze_account(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require(ctx.caller == "contract:regulator", "not_authorised", "regulator only")
        account = arg_str(args, "account")
        record = ctx.get(f"account/{account}")
        record.update(status="frozen", frozen_until=arg_int(args, "until_height"))
        ctx.put(f"account/{account}", record)

    @method("unfreeze_account")
    def unfreeze_account(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require(ctx.caller == "contract:regulator", "not_authorised", "regulator only")
        account = arg_str(args, "account")
        record = ctx.get(f"account/{account}")
        record["status"] = "active"
        record.pop("frozen_until", None)
        ctx.put(f"account/{account}", record)

    @method("revoke_for_test")
    def revoke_for_test(self, ctx: Context, args: dict[str, Any]) -> None:
        member = arg_str(args, "member")
        ctx.put(f"member/{member}", {**ctx.get(f"member/{member}"), "certificate_revoked": True})


def identities() -> list[type[Contract]]:
    found: list[type[Contract]] = [StandInIdentity]
    try:
        module = importlib.import_module("consortia.execution.contracts.identity")
    except ImportError:
        return found
    return [*found, module.Identity]


ACCOUNTS = {
    "central": ("bank-0", 0),
    "alice": ("bank-1", 10_000_000),
    "bob": ("bank-2", 10_000_000),
    "carol": ("bank-3", 0),
    "officer": ("regulator", 0),
}


def ledger(identity: type[Contract] = StandInIdentity) -> Ledger:
    return make_ledger([identity, Asset, Regulator], ACCOUNTS)


def call(chain: Ledger, sender: str, contract: str, method: str, args: Any = None) -> Receipt:
    nonce = chain.engine.query("identity", f"account/{sender}")["nonce"]
    receipts: list[Receipt] = chain.block(
        chain.tx(sender, contract, method, args or {}, nonce=nonce)
    )
    receipt = receipts[0]
    return receipt


def pay(chain: Ledger, sender: str, target: str, amount: int) -> Receipt:
    receipt = call(chain, sender, "asset", "transfer", {"to": target, "amount": amount})
    assert receipt.ok, receipt
    return receipt


def rules(chain: Ledger, **args: Any) -> None:
    assert call(chain, "officer", "regulator", "set_rules", args).ok


def alerts(receipt: Receipt) -> list[dict[str, Any]]:
    return [
        event.fields
        for event in receipt.events
        if (event.contract, event.name) == ("regulator", "alert")
    ]


def stored_alerts(chain: Ledger) -> list[dict[str, Any]]:
    count = chain.engine.query("regulator", "next_alert")
    return [chain.engine.query("regulator", f"alert/{n}") for n in range(count)]


# ---------------------------------------------------------------------- rules and alerts


def test_no_rules_no_alerts_but_every_transfer_is_observed() -> None:
    chain = ledger()
    receipt = pay(chain, "alice", "bob", 9_999_999)
    assert alerts(receipt) == []
    assert stored_alerts(chain) == []


def test_only_regulator_accounts_set_rules() -> None:
    chain = ledger()
    receipt = call(chain, "alice", "regulator", "set_rules", {"single_transfer_max": 1})
    assert receipt.code == "not_authorised"
    assert chain.engine.query("regulator", "rules")["single_transfer_max"] is None


def test_rules_are_replaced_whole_and_validated() -> None:
    chain = ledger()
    rules(chain, single_transfer_max=5, velocity_count=2, velocity_window_blocks=3, listed=["b"])
    assert chain.engine.query("regulator", "rules") == {
        "single_transfer_max": 5,
        "velocity": {"count": 2, "window_blocks": 3},
        "listed": ["b"],
    }
    rules(chain, listed=["z", "a", "z"])
    assert chain.engine.query("regulator", "rules") == {
        "single_transfer_max": None,
        "velocity": None,
        "listed": ["a", "z"],
    }
    listed = [chain.engine.query("regulator", f"listed/{a}") for a in ("a", "b", "z")]
    assert listed == [True, None, True]
    for bad in (
        {"single_transfer_max": 0},
        {"velocity_count": 2},
        {"velocity_count": 101, "velocity_window_blocks": 3},
        {"listed": "alice"},
        {"listed": [1]},
    ):
        assert call(chain, "officer", "regulator", "set_rules", bad).code == "bad_argument"


def test_a_transfer_over_the_single_maximum_raises_an_alert() -> None:
    chain = ledger()
    rules(chain, single_transfer_max=1_000)
    assert alerts(pay(chain, "alice", "bob", 1_000)) == []
    (alert,) = alerts(pay(chain, "alice", "bob", 1_001))
    assert alert["kind"] == "large_transfer"
    assert alert["account"] == "alice"
    assert alert["details"] == {
        "source": "alice",
        "target": "bob",
        "currency": "CNY",
        "amount": 1_001,
        "limit": 1_000,
    }
    assert stored_alerts(chain) == [{key: alert[key] for key in alert if key != "n"}]
    assert stored_alerts(chain)[0]["height"] == chain.height


def test_too_many_transfers_in_the_window_raise_velocity_alerts() -> None:
    chain = ledger()
    rules(chain, velocity_count=2, velocity_window_blocks=3)
    start = chain.height + 1
    # Two transfers in one block, a third in the next: three within three blocks.
    receipts = chain.block(
        chain.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}),
        chain.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}),
    )
    assert [alerts(r) for r in receipts] == [[], []]
    (alert,) = alerts(pay(chain, "alice", "bob", 1))
    assert (alert["kind"], alert["account"]) == ("velocity", "alice")
    assert alert["details"]["count"] == 2
    assert chain.engine.query("regulator", "recent/alice") == [start, start, start + 1]
    chain.block()
    chain.block()  # the block of the first two has left the window
    assert alerts(pay(chain, "alice", "bob", 1)) == []
    assert alerts(pay(chain, "bob", "alice", 1)) == []  # counted per sending account


def test_the_velocity_record_stays_bounded() -> None:
    chain = ledger()
    rules(chain, velocity_count=3, velocity_window_blocks=1_000)
    for _ in range(10):
        pay(chain, "alice", "bob", 1)
    assert len(chain.engine.query("regulator", "recent/alice")) == 4
    assert len(stored_alerts(chain)) == 7


def test_a_listed_party_on_either_side_raises_an_alert() -> None:
    chain = ledger()
    rules(chain, listed=["carol", "bob"])
    (to_listed,) = alerts(pay(chain, "alice", "carol", 10))
    assert (to_listed["kind"], to_listed["account"]) == ("listed_party", "carol")
    (from_listed,) = alerts(pay(chain, "carol", "alice", 5))
    assert from_listed["account"] == "carol"
    both = alerts(pay(chain, "bob", "carol", 1))
    assert [a["account"] for a in both] == ["bob", "carol"]
    assert alerts(pay(chain, "alice", "central", 1)) == []


def test_alerts_of_several_kinds_for_one_transfer() -> None:
    chain = ledger()
    rules(chain, single_transfer_max=10, listed=["bob"])
    kinds = [a["kind"] for a in alerts(pay(chain, "alice", "bob", 11))]
    assert kinds == ["large_transfer", "listed_party"]


def test_only_the_asset_contract_reports_transfers() -> None:
    chain = ledger()
    args = {"source": "alice", "target": "bob", "currency": "CNY", "amount": 5}
    assert call(chain, "alice", "regulator", "observe_transfer", args).code == "not_authorised"
    assert call(chain, "officer", "regulator", "observe_transfer", args).code == "not_authorised"


def test_a_frozen_regulator_contract_does_not_stop_payments() -> None:
    chain = ledger()
    writes = genesis_writes(chain.genesis, [StandInIdentity, Asset, Regulator])
    writes["sys"]["contract/regulator"]["status"] = "frozen"
    engine = Engine(
        SUITE,
        chain.genesis.chain_id,
        ContractRegistry([Asset, Regulator]),
        genesis_hash=genesis_hash(chain.genesis),
    )
    engine.initialise(writes)
    frozen = Ledger(engine, chain.genesis, chain.keys)
    receipt = pay(frozen, "alice", "bob", 5)
    assert [event.contract for event in receipt.events] == ["asset"]


# ---------------------------------------------------------------------- supervision queries


def test_supervision_queries_answer_regulators_only() -> None:
    chain = ledger()
    rules(chain, single_transfer_max=100)
    pay(chain, "alice", "bob", 500)
    pay(chain, "bob", "carol", 700)
    for query, args in (("supervise_account", {"account": "bob"}), ("list_alerts", {})):
        for outsider in ("alice", "bob", "central"):
            assert call(chain, outsider, "regulator", query, args).code == "not_authorised"
    view = call(chain, "officer", "regulator", "supervise_account", {"account": "bob"})
    assert view.ok and view.events == ()
    assert view.result["balances"] == {"CNY": 10_000_000 + 500 - 700}
    assert view.result["record"]["sponsor"] == "bank-2"
    assert [(a["n"], a["kind"], a["account"]) for a in view.result["alerts"]] == [
        (1, "large_transfer", "bob")
    ]
    assert view.result["freeze"] is None


def test_supervise_account_takes_currencies() -> None:
    chain = ledger()
    args = {"account": "alice", "currencies": ["CNY", "USD"]}
    view = call(chain, "officer", "regulator", "supervise_account", args)
    assert view.result["balances"] == {"CNY": 10_000_000, "USD": 0}
    # A currency as the asset contract takes one (types.primitives.CURRENCY_PATTERN): "A1B" and
    # "ÄÖÜ" pass str.isupper() but are no currency the chain can hold.
    for currencies in (["yuan"], ["A1B"], ["ÄÖÜ"], ["CN"], [7]):
        args["currencies"] = currencies
        refused = call(chain, "officer", "regulator", "supervise_account", args)
        assert refused.code == "bad_argument", currencies


def test_list_alerts_pages() -> None:
    chain = ledger()
    rules(chain, single_transfer_max=1)
    for _ in range(5):
        pay(chain, "alice", "bob", 2)
    page = call(chain, "officer", "regulator", "list_alerts", {"from_n": 1, "limit": 3}).result
    assert [a["n"] for a in page["alerts"]] == [1, 2, 3]
    assert page["next"] == 4
    rest = call(chain, "officer", "regulator", "list_alerts", {"from_n": 4}).result
    assert ([a["n"] for a in rest["alerts"]], rest["next"]) == ([4], 5)
    beyond = call(chain, "officer", "regulator", "list_alerts", {"from_n": 9}).result
    assert beyond == {"alerts": [], "next": 9}


def test_a_regulator_whose_certificate_is_revoked_is_refused() -> None:
    chain = ledger()
    assert call(chain, "alice", "identity", "revoke_for_test", {"member": "regulator"}).ok
    receipt = call(chain, "officer", "regulator", "list_alerts", {})
    assert receipt.code == "not_authorised"


# ---------------------------------------------------------------------- emergency freeze


@pytest.mark.parametrize("identity", identities(), ids=lambda c: c.__name__)
def test_an_emergency_freeze_holds_then_lapses(identity: type[Contract]) -> None:
    chain = ledger(identity)
    receipt = call(
        chain, "officer", "regulator", "emergency_freeze", {"account": "bob", "blocks": 3}
    )
    assert receipt.ok, receipt
    height = chain.height
    assert receipt.result == {"until_height": height + 3, "by": "officer", "height": height}
    assert chain.engine.query("regulator", "freeze/bob") == receipt.result
    for _ in range(3):
        refused = call(chain, "bob", "asset", "transfer", {"to": "alice", "amount": 1})
        assert refused.code == "account_frozen"
    # A frozen account still receives.
    pay(chain, "alice", "bob", 10)
    assert chain.height == height + 4
    pay(chain, "bob", "alice", 1)  # lapsed: it works again
    assert chain.engine.query("asset", "balance/CNY/bob") == 10_000_000 + 10 - 1


@pytest.mark.parametrize("identity", identities(), ids=lambda c: c.__name__)
def test_the_regulator_may_lift_its_own_freeze_early(identity: type[Contract]) -> None:
    chain = ledger(identity)
    freeze = {"account": "bob", "blocks": 100}
    assert call(chain, "officer", "regulator", "emergency_freeze", freeze).ok
    assert call(chain, "bob", "asset", "transfer", {"to": "alice", "amount": 1}).code == (
        "account_frozen"
    )
    assert call(chain, "officer", "regulator", "lift_freeze", {"account": "bob"}).ok
    pay(chain, "bob", "alice", 1)
    again = call(chain, "officer", "regulator", "lift_freeze", {"account": "bob"})
    assert again.code == "no_emergency_freeze"


def test_emergency_freeze_refusals() -> None:
    chain = ledger()
    freeze = "emergency_freeze"
    assert call(chain, "alice", "regulator", freeze, {"account": "bob", "blocks": 3}).code == (
        "not_authorised"
    )
    for blocks, code in ((0, "bad_argument"), (FREEZE_BLOCKS_MAX + 1, "freeze_too_long")):
        args = {"account": "bob", "blocks": blocks}
        assert call(chain, "officer", "regulator", freeze, args).code == code
    args = {"account": "nobody", "blocks": 3}
    assert call(chain, "officer", "regulator", freeze, args).code == "unknown_account"
    assert call(chain, "officer", "regulator", "lift_freeze", {"account": "bob"}).code == (
        "no_emergency_freeze"
    )
    args = {"account": "bob", "blocks": FREEZE_BLOCKS_MAX}
    assert call(chain, "officer", "regulator", freeze, args).ok


def test_the_regulator_s_names_and_keys_have_one_spelling() -> None:
    # asset tells the regulator of transfers and identity takes its freezes by these names,
    # both read from regulator_state; the keys are the layout the module docstring lists.
    assert (asset.REGULATOR, regulator.CONTRACT) == (regulator_state.CONTRACT, "regulator")
    assert regulator_state.CALLER == "contract:regulator"
    assert [
        regulator.listed_key("a"),
        regulator.alert_key(3),
        regulator.account_alerts_key("a"),
        regulator.recent_key("a"),
        regulator.freeze_key("a"),
    ] == ["listed/a", "alert/3", "account_alerts/a", "recent/a", "freeze/a"]


def test_rules_changed_in_a_block_apply_to_its_later_transfers() -> None:
    """Observing reads the limits and the listings as the block stands: a change earlier in
    the same block (and its undoing) applies to the very next transfer."""
    chain = ledger()
    nonce = {who: chain.engine.query("identity", f"account/{who}")["nonce"] for who in ACCOUNTS}

    def tx(sender: str, contract: str, method: str, args: dict[str, Any]) -> bytes:
        nonce[sender] += 1
        return chain.tx(sender, contract, method, args, nonce=nonce[sender] - 1)

    def transfer(sender: str, target: str, amount: int) -> bytes:
        return tx(sender, "asset", "transfer", {"to": target, "amount": amount})

    receipts = chain.block(
        transfer("alice", "bob", 6),
        tx("officer", "regulator", "set_rules", {"single_transfer_max": 5, "listed": ["carol"]}),
        transfer("alice", "bob", 6),
        transfer("alice", "carol", 1),
        tx("officer", "regulator", "set_rules", {"listed": ["alice"]}),
        transfer("alice", "bob", 6),
        transfer("alice", "alice", 1),
        tx("officer", "regulator", "set_rules", {}),
        transfer("alice", "carol", 6),
    )
    assert all(receipt.ok for receipt in receipts), receipts
    kinds = [[(a["kind"], a["account"]) for a in alerts(receipt)] for receipt in receipts]
    assert kinds == [
        [],
        [],
        [("large_transfer", "alice")],
        [("listed_party", "carol")],
        [],
        [("listed_party", "alice")],
        [("listed_party", "alice")],  # a self-transfer of a listed account: one alert
        [],
        [],
    ]
    assert [a["n"] for r in receipts for a in alerts(r)] == [0, 1, 2, 3]
