"""The `governance` and `sys` contracts: the committee's thresholds, expiry and one vote per
member; every proposal kind's effect; the validator minimum; interventions on chain; the epoch
hand-over and protocol-upgrade helpers the node uses; refusals that change nothing."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortia.execution.contract import Context, Contract, method
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.governance import Governance, thresholds_met
from consortia.execution.contracts.governance_kinds import (
    CONSENSUS_PARAM_BOUNDS,
    MEMPOOL_PARAM_BOUNDS,
)
from consortia.execution.contracts.governance_state import (
    pending_epoch_config,
    validator_members,
)
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.system import System, protocol_check
from consortia.execution.engine import ProtocolUnsupportedError, Receipt
from consortia.execution.registry import ContractRegistry
from consortia.types.genesis import CommitteeSeat, ConsensusParams, Genesis, MempoolParams
from consortia.types.genesis import Governance as Rules
from tests.execution_helpers import SUITE, Ledger, key_for, make_ledger

ACCOUNTS = {
    "alice": ("bank-0", 0),
    "alice2": ("bank-0", 0),
    "bob": ("bank-1", 0),
    "carol": ("bank-2", 0),
    "dave": ("bank-3", 0),
    "reg": ("regulator", 0),
}
VOTERS = ("alice", "bob", "carol", "dave")  # one account per seat-holding bank, in order


class CounterV1(Contract):
    """Test-only contract shipped in two versions, to upgrade, freeze and retire."""

    name = "counter"
    version = 1

    @method("bump")
    def bump(self, ctx: Context, args: dict[str, Any]) -> int:
        count = int(ctx.get("count", 0)) + 1
        ctx.put("count", count)
        return count


class CounterV2(CounterV1):
    version = 2

    def migrate(self, ctx: Context, from_version: int) -> None:
        ctx.put("migrated_from", from_version)
        ctx.emit("migrated", from_version=from_version)


class FragileV1(Contract):
    """Test-only contract whose next version fails to migrate."""

    name = "fragile"
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        return {"data": "v1"}


class FragileV2(FragileV1):
    version = 2

    def migrate(self, ctx: Context, from_version: int) -> None:
        ctx.put("data", "half-migrated")
        ctx.emit("migration_started")
        ctx.fail("migration_failed", "the data does not fit version 2")


class Extra(Contract):
    """Test-only contract this build ships but the genesis does not deploy."""

    name = "extra"
    version = 1

    def migrate(self, ctx: Context, from_version: int) -> None:
        ctx.put("deployed_from", from_version)

    @method("ping")
    def ping(self, ctx: Context, args: dict[str, Any]) -> str:
        return "pong"


def ledger(weights: tuple[int, ...] = (1, 1, 1, 1), **rules: Any) -> Ledger:
    seats = [CommitteeSeat(member=f"bank-{i}", weight=w) for i, w in enumerate(weights) if w]
    chain = make_ledger(
        [System, Governance, Identity, Asset, CounterV1, FragileV1],
        ACCOUNTS,
        governance=Rules(committee=seats, **rules),
    )
    # The build also ships code the genesis did not deploy.
    chain.engine.registry = ContractRegistry(
        [System, Governance, Identity, Asset, CounterV1, CounterV2, FragileV1, FragileV2, Extra]
    )
    return chain


def tx(chain: Ledger, sender: str, contract: str, name: str, args: Any, version: int = 1) -> bytes:
    nonce = chain.engine.query("identity", f"account/{sender}")["nonce"]
    return chain.tx(sender, contract, name, args, nonce=nonce, version=version)


def send(
    chain: Ledger, sender: str, contract: str, name: str, args: Any = None, version: int = 1
) -> Receipt:
    receipts: list[Receipt] = chain.block(tx(chain, sender, contract, name, args or {}, version))
    (receipt,) = receipts
    return receipt


def propose(chain: Ledger, sender: str, kind: str, **args: Any) -> Receipt:
    return send(chain, sender, "governance", "propose", {"kind": kind, **args})


def vote(chain: Ledger, sender: str, proposal: int, approve: bool = True) -> Receipt:
    return send(chain, sender, "governance", "vote", {"proposal": proposal, "approve": approve})


def opened(chain: Ledger, kind: str, **args: Any) -> int:
    receipt = propose(chain, "alice", kind, **args)
    assert receipt.ok, receipt
    return int(receipt.result)


def passed(chain: Ledger, kind: str, **args: Any) -> Receipt:
    """Propose, then vote yes seat by seat until the proposal closes or every seat voted."""
    number = opened(chain, kind, **args)
    for voter in VOTERS:
        receipt = vote(chain, voter, number)
        assert receipt.ok, receipt
        if receipt.result["status"] != "open" or receipt.result["refused"]:
            break
    return receipt


def executed(chain: Ledger, kind: str, **args: Any) -> Receipt:
    receipt = passed(chain, kind, **args)
    assert receipt.result["status"] == "executed", receipt
    return receipt


def query(chain: Ledger, contract: str, key: str) -> Any:
    return chain.engine.query(contract, key)


def names(receipt: Receipt) -> list[str]:
    return [event.name for event in receipt.events]


def snapshot(chain: Ledger) -> dict[bytes, Any]:
    """Every state value, except the nonces a failed transaction still spends."""
    state = chain.engine.state
    values = {
        key: msgspec.msgpack.decode(state.get(key) or b"") for key in state.keys_with_prefix(b"")
    }
    for key, value in values.items():
        if key.startswith(b"identity/account/"):
            value.pop("nonce")
    return values


def validator_key(index: int) -> tuple[str, str]:
    public_key = SUITE.public_key(SUITE.hash(f"validator-{index}".encode()))
    return SUITE.hash(public_key).hex(), public_key.hex()


def add_fifth_validator(chain: Ledger) -> Receipt:
    node_id, public_key = validator_key(4)
    return executed(chain, "add_validator", node_id=node_id, public_key=public_key, voting_power=1)


# ---------------------------------------------------------------------- genesis


def test_genesis_state_follows_the_genesis_document() -> None:
    chain = ledger(weights=(3, 1, 1, 1))
    assert query(chain, "governance", "committee") == {
        "bank-0": 3,
        "bank-1": 1,
        "bank-2": 1,
        "bank-3": 1,
    }
    params = query(chain, "governance", "params")
    assert params["validators_min"] == 4 and params["validators_warn"] == 5
    assert params["consensus"] == msgspec.to_builtins(ConsensusParams())
    assert params["mempool"] == msgspec.to_builtins(MempoolParams())
    validators = query(chain, "governance", "validators")
    assert len(validators) == 4
    assert [v["node_id"] for v in validators] == sorted(v["node_id"] for v in validators)
    assert query(chain, "governance", "epoch") == 0
    assert query(chain, "governance", "pending_epoch") is None
    assert query(chain, "sys", "protocol") == {
        "version": 1,
        "next_version": None,
        "activation_height": None,
    }


def test_parameter_bounds_cover_exactly_the_genesis_parameters() -> None:
    assert set(CONSENSUS_PARAM_BOUNDS) == set(ConsensusParams.__struct_fields__)
    assert set(MEMPOOL_PARAM_BOUNDS) == set(MempoolParams.__struct_fields__)


# ---------------------------------------------------------------------- thresholds


def test_participation_then_pass_with_unequal_weights() -> None:
    chain = ledger(
        weights=(5, 2, 2, 1), participation_threshold_percent=60, pass_threshold_percent=67
    )
    number = opened(chain, "set_mempool_param", name="transactions_max", value=5000)
    first = vote(chain, "alice", number)  # 5 of 10 voted: under 60% participation
    assert (first.ok, first.result["status"]) == (True, "open")
    assert query(chain, "governance", "params")["mempool"]["transactions_max"] == 100_000
    second = vote(chain, "dave", number, approve=False)  # 6 of 10 voted, 5 of 6 yes
    assert (second.ok, second.result) == (
        True,
        {"proposal": number, "status": "executed", "refused": None},
    )
    assert "intervention_executed" in names(second)
    assert query(chain, "governance", "params")["mempool"]["transactions_max"] == 5000


def test_full_participation_without_the_pass_threshold_stays_open() -> None:
    chain = ledger(
        weights=(5, 2, 2, 1), participation_threshold_percent=60, pass_threshold_percent=67
    )
    number = opened(chain, "set_mempool_param", name="transactions_max", value=5000)
    assert vote(chain, "alice", number, approve=False).ok
    for voter in ("bob", "carol", "dave"):  # 5 of 10 yes: 50% < 67%
        assert vote(chain, voter, number).result["status"] == "open"
    refused = send(chain, "reg", "governance", "execute", {"proposal": number})
    assert (refused.ok, refused.code) == (False, "threshold_not_met")
    shown = send(chain, "reg", "governance", "proposal", {"proposal": number}).result
    assert shown["tally"] == {"yes": 5, "voted": 10, "total": 10}
    assert shown["status"] == "open" and not shown["expired"]


def test_anyone_executes_a_proposal_that_passes_after_a_threshold_change() -> None:
    chain = ledger(
        weights=(5, 2, 2, 1), participation_threshold_percent=60, pass_threshold_percent=67
    )
    first = opened(chain, "set_consensus_param", name="round_timeout_ms", value=2000)
    assert vote(chain, "alice", first, approve=False).ok
    for voter in ("bob", "carol", "dave"):
        assert vote(chain, voter, first).ok
    second = opened(chain, "set_threshold", participation_percent=50, pass_percent=50)
    assert vote(chain, "alice", second).ok
    assert vote(chain, "bob", second).result["status"] == "executed"  # 7 of 10, all yes
    receipt = send(chain, "reg", "governance", "execute", {"proposal": first})
    assert receipt.ok, receipt
    assert query(chain, "governance", "params")["consensus"]["round_timeout_ms"] == 2000
    assert query(chain, "governance", f"proposal/{first}")["status"] == "executed"


@given(
    yes=st.integers(0, 1000),
    no=st.integers(0, 1000),
    absent=st.integers(0, 1000),
    participation=st.integers(1, 100),
    pass_=st.integers(1, 100),
)
def test_thresholds_match_exact_fractions(
    yes: int, no: int, absent: int, participation: int, pass_: int
) -> None:
    voted, total = yes + no, yes + no + absent
    expected = (
        voted > 0
        and Fraction(voted, max(total, 1)) >= Fraction(participation, 100)
        and Fraction(yes, voted) >= Fraction(pass_, 100)
    )
    assert thresholds_met(yes, voted, total, participation, pass_) == expected


# ---------------------------------------------------------------------- votes and expiry


def test_a_member_votes_once_whichever_account_casts_it() -> None:
    chain = ledger()
    number = opened(chain, "set_threshold", participation_percent=60, pass_percent=60)
    assert vote(chain, "alice", number).ok
    before = snapshot(chain)
    for account in ("alice2", "alice"):
        receipt = vote(chain, account, number, approve=False)
        assert (receipt.ok, receipt.code) == (False, "already_voted")
    assert snapshot(chain) == before


def test_accounts_that_do_not_act_for_a_seat_are_refused() -> None:
    chain = ledger()
    number = opened(chain, "set_threshold", participation_percent=60, pass_percent=60)
    # A customer of bank-0 is sponsored by it but does not act for it.
    chain.keys["customer"] = key_for("customer")
    opening = send(
        chain,
        "alice",
        "identity",
        "open_account",
        {"id": "customer", "public_key": key_for("customer")[1].hex(), "kyc_digest": "ab" * 32},
    )
    assert opening.ok, opening
    before = snapshot(chain)
    for account in ("reg", "customer"):
        refused = [
            propose(chain, account, "set_threshold", participation_percent=60, pass_percent=60),
            vote(chain, account, number),
        ]
        assert [r.code for r in refused] == ["not_committee_member"] * 2
    assert snapshot(chain) == before


def test_expired_proposals_refuse_votes_and_execution() -> None:
    chain = ledger(proposal_expiry_blocks=3)
    number = opened(chain, "set_threshold", participation_percent=60, pass_percent=60)
    assert vote(chain, "alice", number).ok
    assert vote(chain, "bob", number).ok  # height 3: the last height before expiry
    assert query(chain, "governance", f"proposal/{number}")["expiry_height"] == 4
    before = snapshot(chain)
    receipt = vote(chain, "carol", number)
    assert (receipt.ok, receipt.code) == (False, "proposal_expired")
    assert send(chain, "reg", "governance", "execute", {"proposal": number}).code == (
        "proposal_expired"
    )
    assert snapshot(chain) == before
    assert send(chain, "reg", "governance", "proposal", {"proposal": number}).result["expired"]


def test_closed_and_unknown_proposals_refuse_votes() -> None:
    chain = ledger()
    executed(chain, "set_threshold", participation_percent=60, pass_percent=60)
    before = snapshot(chain)
    assert vote(chain, "dave", 1).code == "proposal_closed"
    assert vote(chain, "dave", 99).code == "unknown_proposal"
    assert send(chain, "reg", "governance", "apply", {"proposal": 1}).code == "not_authorised"
    assert snapshot(chain) == before


def test_interventions_record_the_proposal_and_its_votes() -> None:
    chain = ledger()
    number = opened(chain, "set_threshold", participation_percent=60, pass_percent=60)
    assert vote(chain, "alice", number).ok
    assert vote(chain, "bob", number, approve=False).ok
    assert vote(chain, "carol", number).result["status"] == "open"  # 2 of 3 yes: under 67%
    assert vote(chain, "dave", number).result["status"] == "executed"  # 3 of 4 yes
    assert query(chain, "governance", "intervention/1") == {
        "proposal": number,
        "kind": "set_threshold",
        "args": {"participation_percent": 60, "pass_percent": 60},
        "votes": [
            {"member": "bank-0", "approve": True, "weight": 1},
            {"member": "bank-1", "approve": False, "weight": 1},
            {"member": "bank-2", "approve": True, "weight": 1},
            {"member": "bank-3", "approve": True, "weight": 1},
        ],
        "height": chain.height,
    }
    record = query(chain, "governance", f"proposal/{number}")
    assert (record["status"], record["intervention"]) == ("executed", 1)


# ---------------------------------------------------------------------- validators and epochs


def test_adding_a_validator_sets_the_pending_epoch() -> None:
    chain = ledger()
    receipt = add_fifth_validator(chain)
    node_id, public_key = validator_key(4)
    validators = query(chain, "governance", "validators")
    assert len(validators) == 5
    assert {"node_id": node_id, "public_key": public_key, "voting_power": 1} in validators
    assert query(chain, "governance", "pending_epoch") == {
        "epoch": 1,
        "validators": validators,
        "height": chain.height,
    }
    assert "validator_count_warning" in names(receipt)  # 5 is at the warning threshold
    config = pending_epoch_config(chain.engine.query, 0)
    assert config is not None and config.epoch == 1
    assert [v.node_id.hex() for v in config.validators] == [v["node_id"] for v in validators]
    assert config.validators[0].public_key == bytes.fromhex(validators[0]["public_key"])
    assert pending_epoch_config(chain.engine.query, 1) is None  # the node runs epoch 1 already


def test_a_validator_added_with_its_member_is_known_by_member_until_revoked() -> None:
    chain = ledger()
    node_id, public_key = validator_key(4)
    executed(
        chain,
        "add_validator",
        node_id=node_id,
        public_key=public_key,
        voting_power=1,
        member="bank-1",
    )
    members = validator_members(chain.engine.query)
    assert members[bytes.fromhex(node_id)] == "bank-1"
    assert members[bytes.fromhex(VALIDATOR_0[0])] is None  # founders: the genesis names them
    executed(chain, "revoke_certificate", member="bank-1")
    other_id, other_key = validator_key(5)
    receipt = propose(
        chain,
        "alice",
        "add_validator",
        node_id=other_id,
        public_key=other_key,
        voting_power=1,
        member="bank-1",
    )
    assert not receipt.ok and receipt.code == "member_revoked"


def test_no_pending_epoch_at_genesis() -> None:
    assert pending_epoch_config(ledger().engine.query, 0) is None


def test_changes_in_one_block_share_one_epoch() -> None:
    chain = ledger()
    add_fifth_validator(chain)
    node_id, public_key = validator_key(4)
    first = opened(chain, "set_voting_power", node_id=node_id, voting_power=3)
    second = opened(chain, "set_voting_power", node_id=node_id, voting_power=2)
    for number in (first, second):
        assert vote(chain, "alice", number).ok
        assert vote(chain, "bob", number).ok
    receipts = chain.block(
        tx(chain, "carol", "governance", "vote", {"proposal": first, "approve": True}),
        tx(chain, "dave", "governance", "vote", {"proposal": second, "approve": True}),
    )
    assert [r.result["status"] for r in receipts] == ["executed", "executed"]
    pending = query(chain, "governance", "pending_epoch")
    assert pending["epoch"] == 2 and query(chain, "governance", "epoch") == 2
    assert {"node_id": node_id, "public_key": public_key, "voting_power": 2} in pending[
        "validators"
    ]
    assert pending_epoch_config(chain.engine.query, 1) is not None


def test_the_validator_minimum_refuses_at_proposal_and_at_execution() -> None:
    chain = ledger()
    victims = [v["node_id"] for v in query(chain, "governance", "validators")]
    before = snapshot(chain)
    refused = propose(chain, "alice", "remove_validator", node_id=victims[0])
    assert (refused.ok, refused.code) == (False, "validator_minimum")
    assert snapshot(chain) == before
    add_fifth_validator(chain)
    first = opened(chain, "remove_validator", node_id=victims[0])
    second = opened(chain, "remove_validator", node_id=victims[1])
    removal = [vote(chain, voter, first) for voter in VOTERS[:3]][-1]
    assert removal.result["status"] == "executed"
    assert "validator_count_warning" in names(removal)  # 4 validators, warning at 5
    assert len(query(chain, "governance", "validators")) == 4
    assert vote(chain, "alice", second).ok and vote(chain, "bob", second).ok
    kept = snapshot(chain)
    last = vote(chain, "carol", second)  # passes, but would leave 3 validators
    assert (last.ok, last.result["status"], last.result["refused"]) == (
        True,
        "open",
        "validator_minimum",
    )
    assert names(last) == ["vote_cast", "execution_refused"]
    assert len(query(chain, "governance", f"proposal/{second}")["votes"]) == 3
    assert query(chain, "governance", "validators") == kept[b"governance/validators"]
    retry = send(chain, "reg", "governance", "execute", {"proposal": second})
    assert (retry.ok, retry.code) == (False, "validator_minimum")


def test_setting_voting_power_changes_the_pending_set() -> None:
    chain = ledger()
    node_id = query(chain, "governance", "validators")[2]["node_id"]
    executed(chain, "set_voting_power", node_id=node_id, voting_power=7)
    pending = query(chain, "governance", "pending_epoch")
    assert pending["validators"][2]["voting_power"] == 7
    config = pending_epoch_config(chain.engine.query, 0)
    assert config is not None and config.total_power == 10


# ---------------------------------------------------------------------- parameters and committee


def test_parameter_proposals_change_params() -> None:
    chain = ledger()
    executed(chain, "set_consensus_param", name="reputation_window", value=32)
    executed(chain, "set_governance_param", name="key_reset_lock_blocks", value=50)
    params = query(chain, "governance", "params")
    assert params["consensus"]["reputation_window"] == 32
    assert params["key_reset_lock_blocks"] == 50


def test_committee_changes_and_thresholds() -> None:
    chain = ledger()
    executed(chain, "change_committee", member="regulator", weight=1)
    assert query(chain, "governance", "committee")["regulator"] == 1
    assert propose(chain, "reg", "set_threshold", participation_percent=50, pass_percent=50).ok
    executed(chain, "change_committee", member="bank-3", weight=0)
    assert "bank-3" not in query(chain, "governance", "committee")
    assert vote(chain, "dave", 2).code == "not_committee_member"
    executed(chain, "set_threshold", participation_percent=100, pass_percent=100)
    params = query(chain, "governance", "params")
    assert (params["participation_threshold_percent"], params["pass_threshold_percent"]) == (
        100,
        100,
    )


def test_the_committee_is_never_empty() -> None:
    chain = ledger(weights=(1,))
    refused = propose(chain, "alice", "change_committee", member="bank-0", weight=0)
    assert (refused.ok, refused.code) == (False, "committee_empty")


# ---------------------------------------------------------------------- contracts and protocol


def test_upgrading_a_contract_runs_its_migration_and_retires_the_old_version() -> None:
    chain = ledger()
    assert send(chain, "bob", "counter", "bump").result == 1
    receipt = executed(chain, "upgrade_contract", contract="counter", version=2)
    assert "migrated" in names(receipt)
    assert query(chain, "counter", "migrated_from") == 1
    assert query(chain, "sys", "contract/counter") == {
        "versions": [1, 2],
        "active_version": 2,
        "status": "active",
    }
    old = send(chain, "bob", "counter", "bump")
    assert (old.ok, old.code) == (False, "wrong_contract_version")
    assert send(chain, "bob", "counter", "bump", version=2).result == 2


def test_upgrading_to_code_this_build_lacks_is_refused() -> None:
    chain = ledger()
    receipt = passed(chain, "upgrade_contract", contract="counter", version=3)
    assert receipt.result["refused"] == "unknown_contract_code"
    assert query(chain, "sys", "contract/counter")["active_version"] == 1


def test_a_failed_migration_changes_nothing_and_leaves_no_events() -> None:
    chain = ledger()
    record = query(chain, "sys", "contract/fragile")
    receipt = passed(chain, "upgrade_contract", contract="fragile", version=2)
    assert receipt.result["refused"] == "migration_failed"
    assert names(receipt) == ["vote_cast", "execution_refused"]
    assert query(chain, "fragile", "data") == "v1"
    assert query(chain, "sys", "contract/fragile") == record


def test_deploying_code_this_build_lacks_is_refused() -> None:
    chain = ledger()
    receipt = passed(chain, "deploy_contract", contract="missing", version=1)
    assert receipt.result["refused"] == "unknown_contract_code"
    assert query(chain, "sys", "contract/missing") is None


def test_deploying_a_contract_makes_it_callable() -> None:
    chain = ledger()
    assert send(chain, "bob", "extra", "ping").code == "unknown_contract"
    executed(chain, "deploy_contract", contract="extra", version=1)
    assert query(chain, "extra", "deployed_from") == 0  # its initial state, written once
    assert send(chain, "bob", "extra", "ping").result == "pong"


def test_freezing_and_unfreezing_a_contract() -> None:
    chain = ledger()
    executed(chain, "freeze_contract", contract="counter")
    assert send(chain, "bob", "counter", "bump").code == "contract_frozen"
    executed(chain, "unfreeze_contract", contract="counter")
    assert send(chain, "bob", "counter", "bump").ok
    executed(chain, "freeze_contract", contract="counter", until_height=chain.height + 5)
    assert send(chain, "bob", "counter", "bump").code == "contract_frozen"
    assert send(chain, "bob", "counter", "bump").ok  # the freeze lapsed


def test_retiring_a_contract_is_final() -> None:
    chain = ledger()
    executed(chain, "retire_contract", contract="counter")
    receipt = send(chain, "bob", "counter", "bump")
    assert (receipt.ok, receipt.code) == (False, "contract_retired")
    for kind in ("unfreeze_contract", "retire_contract", "freeze_contract"):
        assert propose(chain, "alice", kind, contract="counter").code == "contract_retired"
    refused = propose(chain, "alice", "upgrade_contract", contract="counter", version=2)
    assert refused.code == "contract_retired"


def test_a_protocol_upgrade_stops_nodes_that_lack_it_at_activation() -> None:
    chain = ledger()
    activation = chain.height + 10
    executed(chain, "upgrade_protocol", version=2, activation_height=activation)
    assert query(chain, "sys", "protocol") == {
        "version": 1,
        "next_version": 2,
        "activation_height": activation,
    }
    assert protocol_check(chain.engine.query, activation - 1, [1]) is None
    assert protocol_check(chain.engine.query, activation, [1]) == (
        f"this node supports protocol versions [1]; the chain switches to version 2 at height "
        f"{activation}: upgrade before then"
    )
    assert protocol_check(chain.engine.query, activation, [1, 2]) is None
    assert protocol_check(chain.engine.query, activation + 5, [2]) is None
    assert "upgrade the node" in str(protocol_check(chain.engine.query, activation + 5, [1]))
    shown = send(chain, "reg", "sys", "protocol").result
    assert shown["version_in_force"] == 1


def test_protocol_check_on_a_chain_running_an_unsupported_version() -> None:
    record = {"version": 3, "next_version": None, "activation_height": None}

    def read(contract: str, key: str) -> Any:
        return record if (contract, key) == ("sys", "protocol") else None

    assert protocol_check(read, 1, [1, 2]) == (
        "this node supports protocol versions [1, 2]; the chain runs protocol version 3: "
        "upgrade the node"
    )
    assert protocol_check(read, 1, (3,)) is None


def test_a_protocol_upgrade_must_activate_in_the_future() -> None:
    chain = ledger()
    refused = propose(chain, "alice", "upgrade_protocol", version=2, activation_height=chain.height)
    assert (refused.ok, refused.code) == (False, "bad_argument")
    older = propose(chain, "alice", "upgrade_protocol", version=1, activation_height=100)
    assert older.code == "version_not_newer"


def test_sys_obeys_only_governance() -> None:
    chain = ledger()
    before = snapshot(chain)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("deploy", {"contract": "extra", "version": 1}),
        ("upgrade", {"contract": "counter", "version": 2}),
        ("freeze", {"contract": "counter"}),
        ("unfreeze", {"contract": "counter"}),
        ("retire", {"contract": "counter"}),
        ("schedule_protocol_upgrade", {"version": 2, "activation_height": 100}),
    ]
    for name, args in calls:
        assert send(chain, "alice", "sys", name, args).code == "not_authorised"
    assert snapshot(chain) == before


# ---------------------------------------------------------------------- members and accounts


def test_freezing_an_account_stops_its_transactions_until_unfrozen() -> None:
    chain = ledger()
    executed(chain, "freeze_account", account="reg")
    frozen = send(chain, "reg", "sys", "protocol")
    assert (frozen.ok, frozen.code) == (False, "account_frozen")
    executed(chain, "unfreeze_account", account="reg")
    assert send(chain, "reg", "sys", "protocol").ok


def test_revoking_a_certificate_takes_the_members_voice() -> None:
    chain = ledger()
    executed(chain, "revoke_certificate", member="bank-3")
    assert query(chain, "identity", "member/bank-3")["certificate_revoked"] is True
    number = opened(chain, "set_threshold", participation_percent=60, pass_percent=60)
    assert vote(chain, "dave", number).code == "not_committee_member"


def test_adding_a_member_and_setting_roles() -> None:
    chain = ledger()
    executed(chain, "add_member", name="bank-4", roles=["member", "validator_operator"])
    assert query(chain, "identity", "member/bank-4") == {
        "roles": ["validator_operator", "member"],
        "certificate_revoked": False,
    }
    executed(chain, "set_roles", member="bank-4", roles=["observer"])
    assert query(chain, "identity", "member/bank-4")["roles"] == ["observer"]


def test_worked_example_a_fifth_bank_joins_as_validator() -> None:
    chain = ledger()
    executed(chain, "add_member", name="bank-4", roles=["validator_operator", "member"])
    executed(chain, "change_committee", member="bank-4", weight=1)
    add_fifth_validator(chain)
    assert query(chain, "governance", "committee")["bank-4"] == 1
    config = pending_epoch_config(chain.engine.query, 0)
    assert config is not None and len(config.validators) == 5
    assert query(chain, "governance", "intervention_count") == 3


# ---------------------------------------------------------------------- refusals


VALIDATOR_0 = validator_key(0)
UNKNOWN_NODE = "ab" * 32
REFUSED_PROPOSALS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "make_me_king"}, "unknown_kind"),
    ({"kind": "set_threshold", "participation_percent": 50}, "bad_argument"),
    ({"kind": "set_threshold", "participation_percent": 0, "pass_percent": 50}, "bad_argument"),
    ({"kind": "set_threshold", "participation_percent": 50, "pass_percent": 101}, "bad_argument"),
    ({"kind": "set_threshold", "participation_percent": True, "pass_percent": 50}, "bad_argument"),
    (
        {"kind": "set_threshold", "participation_percent": 50, "pass_percent": 50, "x": 1},
        "bad_argument",
    ),
    ({"kind": "set_consensus_param", "name": "suite", "value": 1}, "bad_argument"),
    ({"kind": "set_consensus_param", "name": "round_timeout_ms", "value": "9"}, "bad_argument"),
    ({"kind": "set_consensus_param", "name": "round_timeout_ms", "value": 10}, "bad_argument"),
    ({"kind": "set_consensus_param", "name": "round_timeout_ms", "value": 70_000}, "bad_argument"),
    ({"kind": "set_mempool_param", "name": "transactions_max", "value": 10}, "bad_argument"),
    ({"kind": "set_governance_param", "name": "validators_min", "value": 5}, "validator_minimum"),
    ({"kind": "set_governance_param", "name": "validators_warn", "value": 3}, "bad_argument"),
    (
        {
            "kind": "add_validator",
            "node_id": VALIDATOR_0[0],
            "public_key": "cd" * 32,
            "voting_power": 1,
        },
        "validator_exists",
    ),
    (
        {
            "kind": "add_validator",
            "node_id": UNKNOWN_NODE,
            "public_key": VALIDATOR_0[1],
            "voting_power": 1,
        },
        "validator_exists",
    ),
    (
        {"kind": "add_validator", "node_id": "AB" * 32, "public_key": "cd" * 32, "voting_power": 1},
        "bad_argument",
    ),
    (
        {
            "kind": "add_validator",
            "node_id": UNKNOWN_NODE,
            "public_key": "cd" * 32,
            "voting_power": 0,
        },
        "bad_argument",
    ),
    (
        {
            "kind": "add_validator",
            "node_id": UNKNOWN_NODE,
            "public_key": "cd" * 32,
            "voting_power": 1,
            "member": "no-such-bank",
        },
        "unknown_member",
    ),
    ({"kind": "remove_validator", "node_id": UNKNOWN_NODE}, "unknown_validator"),
    ({"kind": "set_voting_power", "node_id": UNKNOWN_NODE, "voting_power": 2}, "unknown_validator"),
    ({"kind": "deploy_contract", "contract": "counter", "version": 1}, "already_deployed"),
    ({"kind": "upgrade_contract", "contract": "nothing", "version": 2}, "unknown_contract"),
    ({"kind": "upgrade_contract", "contract": "counter", "version": 1}, "version_not_newer"),
    ({"kind": "freeze_contract", "contract": "governance"}, "protected_contract"),
    ({"kind": "retire_contract", "contract": "sys"}, "protected_contract"),
    ({"kind": "unfreeze_contract", "contract": "counter"}, "not_frozen"),
    ({"kind": "freeze_account", "account": "nobody"}, "unknown_account"),
    ({"kind": "revoke_certificate", "member": "nobody"}, "unknown_member"),
    ({"kind": "add_member", "name": "bank-1", "roles": ["member"]}, "member_exists"),
    ({"kind": "add_member", "name": "bank-9", "roles": ["king"]}, "bad_argument"),
    ({"kind": "set_roles", "member": "bank-1", "roles": []}, "bad_argument"),
    ({"kind": "change_committee", "member": "nobody", "weight": 1}, "unknown_member"),
    ({"kind": "change_committee", "member": "regulator", "weight": 0}, "unknown_seat"),
]


@pytest.mark.parametrize(("args", "code"), REFUSED_PROPOSALS)
def test_refused_proposals_change_nothing(args: dict[str, Any], code: str) -> None:
    chain = ledger()
    before = snapshot(chain)
    receipt = send(chain, "alice", "governance", "propose", args)
    assert (receipt.ok, receipt.code) == (False, code)
    assert snapshot(chain) == before


def test_the_engine_itself_stops_at_an_unsupported_activation_height() -> None:
    """The engine refuses to execute the activation block rather than diverge, and says why;
    an engine that supports the new version goes on."""
    chain = ledger()
    activation = chain.height + 10
    executed(chain, "upgrade_protocol", version=2, activation_height=activation)
    while chain.height < activation - 1:
        chain.block()
    root = chain.engine.root
    with pytest.raises(ProtocolUnsupportedError) as stopped:
        chain.engine.execute_block(activation, activation * 1000, [])
    assert stopped.value.code == "protocol_unsupported"
    assert "switches to version 2" in stopped.value.message
    assert chain.engine.root == root
    chain.engine.supported_protocols = (1, 2)
    chain.block()
    assert chain.height == activation
