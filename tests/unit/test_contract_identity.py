"""The `identity` contract through the real engine: accounts, key rotation and reset, freezes,
cancellation and member records; every refusal changes nothing but the signer's nonce.

Governance and the regulator are stood in for by tiny test-only contracts named "governance"
and "regulator" that forward a call to identity, so identity sees them as its callers
("contract:governance", "contract:regulator"). "rogue" forwards the same way and must be refused.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.execution.contract import Context, Contract, method
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.identity import EMERGENCY_FREEZE_BLOCKS_MAX, Identity
from consortia.execution.contracts.identity_state import (
    account_exists,
    account_status,
    acts_for,
    certificate_revoked,
    has_role,
    member_of,
)
from consortia.execution.engine import Receipt
from consortia.types.genesis import CommitteeSeat, Member
from consortia.types.genesis import Governance as GovernanceParams
from tests.execution_helpers import SUITE, Ledger, key_for, make_ledger

LOCK_BLOCKS = 3
DIGEST = "ab" * 32
BANK0 = "bank0-ops"  # an institution account of bank-0 (every genesis account is one)
BANK0_BACKUP = "bank0-backup"
BANK1 = "bank1-ops"
REGULATOR_OPS = "regulator-ops"
OBSERVER_OPS = "observer-ops"


class _Forwarder(Contract):
    """Forwards `call` with the remaining arguments to identity, as this contract."""

    @method("forward")
    def forward(self, ctx: Context, args: dict[str, Any]) -> Any:
        rest = {key: value for key, value in args.items() if key != "call"}
        return ctx.invoke("identity", str(args["call"]), rest)


class FakeGovernance(_Forwarder):
    name = "governance"
    version = 1


class FakeRegulator(_Forwarder):
    name = "regulator"
    version = 1


class Rogue(_Forwarder):
    name = "rogue"
    version = 1


class GovernanceWithParams(FakeGovernance):
    """A governance that has set its own reset lock window."""

    version = 2

    @classmethod
    def genesis_state(cls, genesis: Any) -> dict[str, Any]:
        del genesis
        return {"params": {"key_reset_lock_blocks": 7}}


class Probe(Contract):
    """Calls the helper functions other contracts import and returns what they say."""

    name = "probe"
    version = 1

    @method("look")
    def look(self, ctx: Context, args: dict[str, Any]) -> Any:
        account, member = str(args["account"]), str(args.get("member", "bank-0"))
        return {
            "exists": account_exists(ctx, account),
            "status": account_status(ctx, account),
            "member_of": member_of(ctx, account),
            "acts_for": acts_for(ctx, account),
            "is_regulator": has_role(ctx, member, "regulator"),
            "revoked": certificate_revoked(ctx, member),
        }


CONTRACTS: list[type[Contract]] = [Asset, Identity, FakeGovernance, FakeRegulator, Rogue, Probe]
MEMBERS = [
    Member(name="bank-0", roles=["validator_operator", "member"]),
    Member(name="bank-1", roles=["member"]),
    Member(name="bank-2", roles=["validator_operator", "member"]),
    Member(name="bank-3", roles=["validator_operator", "member"]),
    Member(name="regulator", roles=["regulator"]),
    Member(name="observer", roles=["observer"]),
]


def new_ledger(contracts: list[type[Contract]] | None = None) -> Ledger:
    return make_ledger(
        contracts or CONTRACTS,
        accounts={
            BANK0: ("bank-0", 1_000_000),
            BANK0_BACKUP: ("bank-0", 0),
            BANK1: ("bank-1", 0),
            REGULATOR_OPS: ("regulator", 0),
            OBSERVER_OPS: ("observer", 0),
        },
        members=MEMBERS,
        governance=GovernanceParams(
            committee=[CommitteeSeat(member=f"bank-{n}", weight=1) for n in range(4)],
            key_reset_lock_blocks=LOCK_BLOCKS,
        ),
    )


@pytest.fixture
def ledger() -> Ledger:
    return new_ledger()


# ---------------------------------------------------------------------- helpers


def public_hex(name: str) -> str:
    return key_for(name)[1].hex()


def run(ledger: Ledger, sender: str, name: str, /, **args: Any) -> Receipt:
    """One identity call in its own block."""
    receipt: Receipt = ledger.block(ledger.tx(sender, "identity", name, args))[0]
    return receipt


def as_governance(ledger: Ledger, name: str, /, **args: Any) -> Receipt:
    return forward(ledger, "governance", name, **args)


def as_regulator(ledger: Ledger, name: str, /, **args: Any) -> Receipt:
    return forward(ledger, "regulator", name, **args)


def forward(ledger: Ledger, contract: str, name: str, /, **args: Any) -> Receipt:
    receipt: Receipt = ledger.block(ledger.tx(BANK1, contract, "forward", {"call": name, **args}))[
        0
    ]
    return receipt


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, f"{receipt.code}: {receipt.message}"
    return receipt


def events(receipt: Receipt) -> list[tuple[str, dict[str, Any]]]:
    return [(event.name, event.fields) for event in receipt.events if event.contract == "identity"]


def account(ledger: Ledger, account_id: str) -> dict[str, Any] | None:
    record = ledger.engine.query("identity", f"account/{account_id}")
    assert record is None or isinstance(record, dict)
    return record


def member(ledger: Ledger, name: str) -> dict[str, Any] | None:
    record = ledger.engine.query("identity", f"member/{name}")
    assert record is None or isinstance(record, dict)
    return record


def open_customer(ledger: Ledger, account_id: str, *, by: str = BANK0, **extra: Any) -> Receipt:
    ledger.keys[account_id] = key_for(account_id)
    return ok(
        run(
            ledger,
            by,
            "open_account",
            id=account_id,
            public_key=public_hex(account_id),
            kyc_digest=DIGEST,
            **extra,
        )
    )


def snapshot(ledger: Ledger) -> dict[bytes, Any]:
    """Every committed key and value, account nonces left out."""
    state = ledger.engine.state
    values: dict[bytes, Any] = {}
    for key in state.keys_with_prefix(b""):
        raw = state.get(key)
        assert raw is not None
        value = msgspec.msgpack.decode(raw)
        if key.startswith(b"identity/account/"):
            value = {field: item for field, item in value.items() if field != "nonce"}
        values[key] = value
    return values


def refused(ledger: Ledger, code: str, call: Any, /, *args: Any, **kwargs: Any) -> Receipt:
    """Make `call`, expect refusal with `code`, and check it changed nothing but a nonce."""
    before = snapshot(ledger)
    receipt: Receipt = call(*args, **kwargs)
    assert not receipt.ok
    assert receipt.code == code, f"expected {code}, got {receipt.code}: {receipt.message}"
    assert receipt.events == ()
    assert snapshot(ledger) == before
    return receipt


def refused_at_admission(ledger: Ledger, sender: str, code: str, private_key: bytes) -> None:
    """A transaction by `sender` signed with `private_key` is refused before it runs: nothing
    changes, not even the nonce."""
    record = account(ledger, sender)
    assert record is not None
    saved = ledger.keys[sender]
    ledger.keys[sender] = (private_key, SUITE.public_key(private_key))
    before = snapshot(ledger)
    try:
        tx = ledger.tx(sender, "identity", "cancel_reset", {}, nonce=record["nonce"])
        receipt: Receipt = ledger.block(tx)[0]
    finally:
        ledger.keys[sender] = saved
    assert receipt.code == code, f"expected {code}, got {receipt.code}: {receipt.message}"
    assert snapshot(ledger) == before
    assert account(ledger, sender) == record


# ---------------------------------------------------------------------- genesis


def test_genesis_writes_members_used_ids_and_params_but_no_accounts(ledger: Ledger) -> None:
    state = Identity.genesis_state(ledger.genesis)
    assert not any(key.startswith("account/") for key in state)
    assert state["params"] == {"key_reset_lock_blocks": LOCK_BLOCKS}
    assert member(ledger, "bank-0") == {
        "roles": ["validator_operator", "member"],
        "certificate_revoked": False,
    }
    assert member(ledger, "regulator") == {"roles": ["regulator"], "certificate_revoked": False}
    for account_id in (BANK0, BANK1, REGULATOR_OPS):
        assert ledger.engine.query("identity", f"used_id/{account_id}") is True
    # The engine's genesis account record is left as genesis.py wrote it.
    assert account(ledger, BANK0) == {
        "public_key": public_hex(BANK0),
        "sponsor": "bank-0",
        "status": "active",
        "nonce": 0,
    }


# ---------------------------------------------------------------------- open_account


def test_open_account_for_a_customer(ledger: Ledger) -> None:
    receipt = open_customer(ledger, "alice")
    assert account(ledger, "alice") == {
        "public_key": public_hex("alice"),
        "sponsor": "bank-0",
        "status": "active",
        "nonce": 0,
        "kyc_digest": DIGEST,
        "kind": "customer",
    }
    assert ledger.engine.query("identity", "used_id/alice") is True
    assert events(receipt) == [
        (
            "account_opened",
            {
                "account": "alice",
                "sponsor": "bank-0",
                "kind": "customer",
                "public_key": public_hex("alice"),
                "kyc_digest": DIGEST,
                "by": BANK0,
            },
        )
    ]
    # The new account signs transactions at once.
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/2")))


def test_open_institution_account_which_then_opens_accounts(ledger: Ledger) -> None:
    open_customer(ledger, "bank0-branch", kind="institution")
    open_customer(ledger, "carol", by="bank0-branch")
    assert account(ledger, "carol")["sponsor"] == "bank-0"  # type: ignore[index]


def _open(ledger: Ledger, by: str, account_id: str = "newcomer", **overrides: Any) -> Receipt:
    args = {"id": account_id, "public_key": public_hex(account_id), "kyc_digest": DIGEST}
    args.update(overrides)
    return run(ledger, by, "open_account", **args)


def test_open_account_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    # Customers, members without a sponsoring role and contracts open nothing.
    refused(ledger, "not_authorised", _open, ledger, "alice")
    refused(ledger, "not_authorised", _open, ledger, REGULATOR_OPS)
    refused(ledger, "not_authorised", _open, ledger, OBSERVER_OPS)
    refused(
        ledger,
        "not_authorised",
        as_governance,
        ledger,
        "open_account",
        id="gov-made",
        public_key=public_hex("gov-made"),
        kyc_digest=DIGEST,
    )
    refused(ledger, "account_exists", _open, ledger, BANK1, "alice")
    refused(ledger, "account_exists", _open, ledger, BANK0, BANK1)
    for bad in (
        {"id": ""},
        {"id": "x" * 65},
        {"id": "has space"},
        {"id": "contract:governance"},
        # A transaction's sender holds no colon: such an account could never sign.
        {"id": "bank-0:alice"},
        {"id": "alice\n"},
        {"id": 7},
        {"public_key": public_hex("newcomer").upper()},
        {"public_key": "ab" * 31},
        {"public_key": "zz" * 32},
        {"kyc_digest": ""},
        {"kyc_digest": "ab" * 31},
        {"kind": "overlord"},
    ):
        refused(ledger, "bad_argument", _open, ledger, BANK0, **bad)


def test_open_account_refused_when_member_certificate_revoked(ledger: Ledger) -> None:
    ok(as_governance(ledger, "revoke_certificate", member="bank-0"))
    refused(ledger, "member_revoked", _open, ledger, BANK0)
    ok(as_governance(ledger, "restore_certificate", member="bank-0"))
    ok(_open(ledger, BANK0))


def test_ids_are_never_reused_after_cancel(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(run(ledger, BANK0, "cancel_account", account="alice"))
    refused(ledger, "id_reused", _open, ledger, BANK0, "alice")
    refused(ledger, "id_reused", _open, ledger, BANK1, "alice")
    # Even with the record gone, the used-id list refuses it.
    assert ledger.engine.query("identity", "used_id/alice") is True


# ---------------------------------------------------------------------- rotate_key


def test_rotate_key_keeps_the_id_and_retires_the_old_key(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    old_private = ledger.keys["alice"][0]
    receipt = ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/new")))
    assert events(receipt) == [
        ("key_rotated", {"account": "alice", "public_key": public_hex("alice/new")})
    ]
    assert account(ledger, "alice")["public_key"] == public_hex("alice/new")  # type: ignore[index]
    refused_at_admission(ledger, "alice", "wrong_key", old_private)
    ledger.keys["alice"] = key_for("alice/new")
    ledger.nonces["alice"] = 1
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/3")))


def test_rotate_key_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    refused(ledger, "bad_argument", run, ledger, "alice", "rotate_key", public_key="00")
    refused(
        ledger, "bad_argument", run, ledger, "alice", "rotate_key", public_key=public_hex("alice")
    )
    refused(
        ledger, "not_authorised", as_governance, ledger, "rotate_key", public_key=public_hex("g")
    )
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))
    refused(
        ledger, "reset_pending", run, ledger, "alice", "rotate_key", public_key=public_hex("a2")
    )


# ---------------------------------------------------------------------- key reset


def test_reset_takes_effect_only_after_the_lock_window(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    old_private = ledger.keys["alice"][0]
    new_key = public_hex("alice/new")
    receipt = ok(run(ledger, BANK0_BACKUP, "request_reset", account="alice", public_key=new_key))
    requested_at = ledger.height
    effective = requested_at + LOCK_BLOCKS
    assert events(receipt) == [
        (
            "reset_requested",
            {
                "account": "alice",
                "public_key": new_key,
                "effective_height": effective,
                "by": BANK0_BACKUP,
            },
        )
    ]
    assert account(ledger, "alice")["pending_reset"] == {  # type: ignore[index]
        "public_key": new_key,
        "effective_height": effective,
    }
    while ledger.height + 1 < effective:
        refused(ledger, "reset_not_due", run, ledger, BANK1, "complete_reset", account="alice")
    assert ledger.height + 1 == effective
    receipt = ok(run(ledger, BANK1, "complete_reset", account="alice"))
    assert events(receipt) == [
        ("reset_completed", {"account": "alice", "public_key": new_key, "by": BANK1})
    ]
    record = account(ledger, "alice")
    assert record is not None
    assert record["public_key"] == new_key and "pending_reset" not in record
    # The old key can no longer sign; the new one can.
    refused_at_admission(ledger, "alice", "wrong_key", old_private)
    ledger.keys["alice"] = key_for("alice/new")
    ledger.nonces["alice"] = 0
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/3")))


def test_old_key_cancels_a_reset_during_the_window(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))
    receipt = ok(run(ledger, "alice", "cancel_reset"))
    assert events(receipt) == [("reset_cancelled", {"account": "alice", "by": "alice"})]
    assert "pending_reset" not in account(ledger, "alice")  # type: ignore[operator]
    for _ in range(LOCK_BLOCKS):
        ledger.block()
    refused(ledger, "no_reset_pending", run, ledger, BANK1, "complete_reset", account="alice")
    refused(ledger, "no_reset_pending", run, ledger, "alice", "cancel_reset")
    assert account(ledger, "alice")["public_key"] == public_hex("alice")  # type: ignore[index]
    # A fresh request may follow a cancelled one.
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))


def test_lock_window_comes_from_governance_params_when_set() -> None:
    ledger = new_ledger([Asset, Identity, GovernanceWithParams, FakeRegulator, Rogue, Probe])
    open_customer(ledger, "alice")
    receipt = ok(
        run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new"))
    )
    assert events(receipt)[0][1]["effective_height"] == ledger.height + 7


def test_request_reset_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    open_customer(ledger, "bob")
    new_key = public_hex("alice/new")
    refused(
        ledger,
        "not_authorised",
        run,
        ledger,
        "bob",
        "request_reset",
        account="alice",
        public_key=new_key,
    )
    refused(
        ledger,
        "not_sponsor",
        run,
        ledger,
        BANK1,
        "request_reset",
        account="alice",
        public_key=new_key,
    )
    refused(
        ledger,
        "unknown_account",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="nobody",
        public_key=new_key,
    )
    refused(
        ledger,
        "bad_argument",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="alice",
        public_key=public_hex("alice"),
    )
    refused(
        ledger,
        "not_authorised",
        as_governance,
        ledger,
        "request_reset",
        account="alice",
        public_key=new_key,
    )
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=new_key))
    refused(
        ledger,
        "reset_pending",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="alice",
        public_key=public_hex("alice/other"),
    )
    ok(as_governance(ledger, "freeze_account", account="bob"))
    refused(
        ledger,
        "account_frozen",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="bob",
        public_key=new_key,
    )
    ok(run(ledger, BANK0, "cancel_account", account="alice"))
    refused(
        ledger,
        "account_cancelled",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="alice",
        public_key=new_key,
    )
    ok(as_governance(ledger, "revoke_certificate", member="bank-0"))
    refused(
        ledger,
        "member_revoked",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="bob",
        public_key=new_key,
    )


def test_complete_reset_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    refused(ledger, "bad_argument", run, ledger, BANK1, "complete_reset")
    refused(ledger, "unknown_account", run, ledger, BANK1, "complete_reset", account="nobody")
    refused(ledger, "no_reset_pending", run, ledger, BANK1, "complete_reset", account="alice")
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))
    ok(as_governance(ledger, "freeze_account", account="alice"))
    for _ in range(LOCK_BLOCKS):
        ledger.block()
    # A frozen account is held as it is; the reset waits for the unfreeze.
    refused(ledger, "account_frozen", run, ledger, BANK1, "complete_reset", account="alice")
    ok(as_governance(ledger, "unfreeze_account", account="alice"))
    ok(run(ledger, BANK1, "complete_reset", account="alice"))


def test_a_contract_may_complete_a_due_reset(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))
    for _ in range(LOCK_BLOCKS):
        ledger.block()
    receipt = ok(forward(ledger, "rogue", "complete_reset", account="alice"))
    assert events(receipt)[0][1]["by"] == "contract:rogue"


def test_cancel_reset_refused_to_contracts(ledger: Ledger) -> None:
    refused(ledger, "not_authorised", as_governance, ledger, "cancel_reset")


# ---------------------------------------------------------------------- cancel_account


def test_sponsor_cancels_an_account_for_good(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(run(ledger, BANK0, "request_reset", account="alice", public_key=public_hex("alice/new")))
    receipt = ok(run(ledger, BANK0_BACKUP, "cancel_account", account="alice"))
    assert events(receipt) == [
        ("reset_cancelled", {"account": "alice", "by": BANK0_BACKUP}),
        ("account_cancelled", {"account": "alice", "by": BANK0_BACKUP}),
    ]
    record = account(ledger, "alice")
    assert record is not None
    assert record["status"] == "cancelled" and "pending_reset" not in record
    assert ledger.engine.query("identity", "cancelled/alice") == {
        "height": ledger.height,
        "by": BANK0_BACKUP,
    }
    # The cancelled account signs nothing more; nothing revives it.
    refused_at_admission(ledger, "alice", "account_cancelled", ledger.keys["alice"][0])
    refused(ledger, "account_cancelled", run, ledger, BANK0, "cancel_account", account="alice")
    refused(ledger, "account_cancelled", as_governance, ledger, "cancel_account", account="alice")
    refused(ledger, "account_cancelled", as_governance, ledger, "freeze_account", account="alice")
    refused(ledger, "account_cancelled", as_governance, ledger, "unfreeze_account", account="alice")
    refused(
        ledger,
        "account_cancelled",
        as_regulator,
        ledger,
        "freeze_account",
        account="alice",
        until_height=ledger.height + 5,
    )
    refused(ledger, "account_cancelled", run, ledger, BANK1, "complete_reset", account="alice")


def test_governance_cancels_even_a_frozen_account(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(as_regulator(ledger, "freeze_account", account="alice", until_height=ledger.height + 50))
    refused(ledger, "account_frozen", run, ledger, BANK0, "cancel_account", account="alice")
    receipt = ok(as_governance(ledger, "cancel_account", account="alice"))
    assert events(receipt) == [
        ("account_cancelled", {"account": "alice", "by": "contract:governance"})
    ]
    record = account(ledger, "alice")
    assert record is not None
    assert record["status"] == "cancelled" and "frozen_until" not in record


def test_cancel_account_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    open_customer(ledger, "bob")
    refused(ledger, "not_authorised", run, ledger, "bob", "cancel_account", account="alice")
    refused(ledger, "not_sponsor", run, ledger, BANK1, "cancel_account", account="alice")
    refused(ledger, "not_authorised", forward, ledger, "rogue", "cancel_account", account="alice")
    refused(ledger, "unknown_account", run, ledger, BANK0, "cancel_account", account="nobody")
    refused(ledger, "unknown_account", as_governance, ledger, "cancel_account", account="nobody")
    refused(ledger, "bad_argument", run, ledger, BANK0, "cancel_account")


# ---------------------------------------------------------------------- freeze and unfreeze


def test_governance_freeze_holds_until_governance_unfreezes(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    receipt = ok(as_governance(ledger, "freeze_account", account="alice"))
    assert events(receipt) == [
        (
            "account_frozen",
            {"account": "alice", "by": "contract:governance", "until_height": None},
        )
    ]
    for _ in range(3):
        refused_at_admission(ledger, "alice", "account_frozen", ledger.keys["alice"][0])
    refused(ledger, "not_authorised", as_regulator, ledger, "unfreeze_account", account="alice")
    receipt = ok(as_governance(ledger, "unfreeze_account", account="alice"))
    assert events(receipt) == [
        ("account_unfrozen", {"account": "alice", "by": "contract:governance"})
    ]
    assert account(ledger, "alice")["status"] == "active"  # type: ignore[index]
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/new")))


def test_emergency_freeze_lapses_after_its_last_height(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    until = ledger.height + 1 + 2  # holds in the freezing block and the two after
    receipt = ok(as_regulator(ledger, "freeze_account", account="alice", until_height=until))
    assert events(receipt) == [
        ("account_frozen", {"account": "alice", "by": "contract:regulator", "until_height": until})
    ]
    assert account(ledger, "alice")["frozen_until"] == until  # type: ignore[index]
    while ledger.height < until:
        refused_at_admission(ledger, "alice", "account_frozen", ledger.keys["alice"][0])
    # Past its last height the engine admits the account again, and identity agrees.
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/new")))
    record = account(ledger, "alice")
    assert record is not None
    assert record["status"] == "active" and "frozen_until" not in record


def test_regulator_lifts_its_own_emergency_freeze(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(as_regulator(ledger, "freeze_account", account="alice", until_height=ledger.height + 90))
    receipt = ok(as_regulator(ledger, "unfreeze_account", account="alice"))
    assert events(receipt) == [
        ("account_unfrozen", {"account": "alice", "by": "contract:regulator"})
    ]
    ok(run(ledger, "alice", "rotate_key", public_key=public_hex("alice/new")))


def test_governance_ratifies_an_emergency_freeze_into_a_permanent_one(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(as_regulator(ledger, "freeze_account", account="alice", until_height=ledger.height + 2))
    ok(as_regulator(ledger, "freeze_account", account="alice", until_height=ledger.height + 5))
    ok(as_governance(ledger, "freeze_account", account="alice"))
    assert "frozen_until" not in account(ledger, "alice")  # type: ignore[operator]
    for _ in range(8):
        ledger.block()
    refused_at_admission(ledger, "alice", "account_frozen", ledger.keys["alice"][0])
    refused(ledger, "not_authorised", as_regulator, ledger, "unfreeze_account", account="alice")


def test_freeze_refusals(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    for caller in (BANK0, REGULATOR_OPS, "alice"):
        refused(ledger, "not_authorised", run, ledger, caller, "freeze_account", account="alice")
        refused(ledger, "not_authorised", run, ledger, caller, "unfreeze_account", account="alice")
    refused(ledger, "not_authorised", forward, ledger, "rogue", "freeze_account", account="alice")
    refused(ledger, "not_authorised", forward, ledger, "rogue", "unfreeze_account", account="alice")
    refused(ledger, "unknown_account", as_governance, ledger, "freeze_account", account="nobody")
    refused(ledger, "not_frozen", as_governance, ledger, "unfreeze_account", account="alice")
    refused(ledger, "not_frozen", as_regulator, ledger, "unfreeze_account", account="alice")
    # The regulator must name a last height, no further than the emergency bound. (Arguments
    # are made before their block: that block's height is ledger.height + 1.)
    refused(ledger, "bad_argument", as_regulator, ledger, "freeze_account", account="alice")
    refused(
        ledger,
        "bad_argument",
        as_regulator,
        ledger,
        "freeze_account",
        account="alice",
        until_height=ledger.height,
    )
    refused(
        ledger,
        "bad_argument",
        as_regulator,
        ledger,
        "freeze_account",
        account="alice",
        until_height=ledger.height + 1 + EMERGENCY_FREEZE_BLOCKS_MAX + 1,
    )
    refused(
        ledger,
        "bad_argument",
        as_governance,
        ledger,
        "freeze_account",
        account="alice",
        until_height=ledger.height + 5,
    )
    bound = ledger.height + 1 + EMERGENCY_FREEZE_BLOCKS_MAX
    ok(as_regulator(ledger, "freeze_account", account="alice", until_height=bound))
    # The regulator only lengthens its own freeze.
    refused(
        ledger,
        "already_frozen",
        as_regulator,
        ledger,
        "freeze_account",
        account="alice",
        until_height=ledger.height + 5,
    )
    ok(as_governance(ledger, "freeze_account", account="alice"))
    refused(ledger, "already_frozen", as_governance, ledger, "freeze_account", account="alice")
    refused(
        ledger,
        "already_frozen",
        as_regulator,
        ledger,
        "freeze_account",
        account="alice",
        until_height=bound + 1,
    )


def test_frozen_account_is_held_as_it_is(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    ok(as_governance(ledger, "freeze_account", account="alice"))
    refused(
        ledger,
        "account_frozen",
        run,
        ledger,
        BANK0,
        "request_reset",
        account="alice",
        public_key=public_hex("alice/new"),
    )
    refused(ledger, "account_frozen", run, ledger, BANK0, "cancel_account", account="alice")
    # A frozen institution account acts for nobody.
    ok(as_governance(ledger, "freeze_account", account=BANK0_BACKUP))
    assert look(ledger, BANK0_BACKUP)["acts_for"] is None


def test_frozen_account_cannot_transfer_money(ledger: Ledger) -> None:
    ok(as_governance(ledger, "freeze_account", account=BANK0))
    before = snapshot(ledger)
    nonce = ledger.nonces.get(BANK0, 0)
    receipt = ledger.block(
        ledger.tx(BANK0, "asset", "transfer", {"to": BANK1, "amount": 5}, nonce=nonce)
    )[0]
    assert receipt.code == "account_frozen"
    assert snapshot(ledger) == before
    assert ledger.engine.query("asset", f"balance/CNY/{BANK0}") == 1_000_000


# ---------------------------------------------------------------------- members


def test_governance_adds_members_and_sets_roles(ledger: Ledger) -> None:
    receipt = ok(as_governance(ledger, "add_member", name="bank-9", roles=["member", "observer"]))
    assert events(receipt) == [
        ("member_added", {"member": "bank-9", "roles": ["member", "observer"]})
    ]
    assert member(ledger, "bank-9") == {
        "roles": ["member", "observer"],
        "certificate_revoked": False,
    }
    receipt = ok(
        as_governance(ledger, "set_roles", member="bank-9", roles=["validator_operator", "member"])
    )
    assert events(receipt) == [
        (
            "roles_changed",
            {
                "member": "bank-9",
                "roles": ["validator_operator", "member"],
                "previous": ["member", "observer"],
            },
        )
    ]
    # Taking the sponsoring roles away stops the member's accounts opening new ones.
    ok(as_governance(ledger, "set_roles", member="bank-0", roles=["observer"]))
    refused(ledger, "not_authorised", _open, ledger, BANK0)


def test_governance_revokes_and_restores_certificates(ledger: Ledger) -> None:
    receipt = ok(as_governance(ledger, "revoke_certificate", member="bank-1"))
    assert events(receipt) == [("certificate_revoked", {"member": "bank-1"})]
    assert member(ledger, "bank-1")["certificate_revoked"] is True  # type: ignore[index]
    refused(ledger, "already_revoked", as_governance, ledger, "revoke_certificate", member="bank-1")
    receipt = ok(as_governance(ledger, "restore_certificate", member="bank-1"))
    assert events(receipt) == [("certificate_restored", {"member": "bank-1"})]
    refused(ledger, "not_revoked", as_governance, ledger, "restore_certificate", member="bank-1")


def test_member_methods_refuse_anyone_but_governance(ledger: Ledger) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("add_member", {"name": "bank-9", "roles": ["member"]}),
        ("set_roles", {"member": "bank-1", "roles": ["observer"]}),
        ("revoke_certificate", {"member": "bank-1"}),
        ("restore_certificate", {"member": "bank-1"}),
    ]
    for name, args in calls:
        for sender in (BANK0, REGULATOR_OPS):
            refused(ledger, "not_authorised", run, ledger, sender, name, **args)
        for contract in ("regulator", "rogue"):
            refused(ledger, "not_authorised", forward, ledger, contract, name, **args)


def test_member_method_refusals(ledger: Ledger) -> None:
    refused(
        ledger,
        "member_exists",
        as_governance,
        ledger,
        "add_member",
        name="bank-1",
        roles=["member"],
    )
    for roles in ([], ["member", "member"], ["king"], "member", [1]):
        refused(
            ledger,
            "bad_argument",
            as_governance,
            ledger,
            "add_member",
            name="bank-9",
            roles=roles,
        )
        refused(
            ledger,
            "bad_argument",
            as_governance,
            ledger,
            "set_roles",
            member="bank-1",
            roles=roles,
        )
    refused(ledger, "bad_argument", as_governance, ledger, "add_member", name="", roles=["member"])
    for name in ("set_roles", "revoke_certificate", "restore_certificate"):
        refused(
            ledger,
            "unknown_member",
            as_governance,
            ledger,
            name,
            member="bank-9",
            roles=["member"],
        )


# ---------------------------------------------------------------------- helpers for contracts


def look(ledger: Ledger, account_id: str, member_name: str = "bank-0") -> dict[str, Any]:
    receipt = ok(
        ledger.block(
            ledger.tx(BANK1, "probe", "look", {"account": account_id, "member": member_name})
        )[0]
    )
    assert isinstance(receipt.result, dict)
    return receipt.result


def test_helpers_for_other_contracts(ledger: Ledger) -> None:
    open_customer(ledger, "alice")
    assert look(ledger, BANK0) == {
        "exists": True,
        "status": "active",
        "member_of": "bank-0",
        "acts_for": "bank-0",
        "is_regulator": False,
        "revoked": False,
    }
    # A customer belongs to its sponsor but never acts for it.
    assert look(ledger, "alice", "regulator") == {
        "exists": True,
        "status": "active",
        "member_of": "bank-0",
        "acts_for": None,
        "is_regulator": True,
        "revoked": False,
    }
    assert look(ledger, "nobody", "nobody") == {
        "exists": False,
        "status": None,
        "member_of": None,
        "acts_for": None,
        "is_regulator": False,
        "revoked": False,
    }
    ok(as_regulator(ledger, "freeze_account", account=BANK0, until_height=ledger.height + 2))
    assert look(ledger, BANK0)["status"] == "frozen"
    assert look(ledger, BANK0)["status"] == "active"  # lapsed
    ok(as_governance(ledger, "revoke_certificate", member="bank-0"))
    assert look(ledger, BANK0)["acts_for"] is None
    assert look(ledger, BANK0)["revoked"] is True
    ok(as_governance(ledger, "cancel_account", account="alice"))
    assert look(ledger, "alice")["exists"] is True
    assert look(ledger, "alice")["status"] == "cancelled"


# ---------------------------------------------------------------------- property


POOL = ["p0", "p1", "p2"]
KEYS = [f"key-{n}" for n in range(3)]

ids = st.sampled_from(POOL)
keys = st.sampled_from(KEYS)
# Key changes are listed twice: they are what the invariants are about.
operation = st.one_of(
    st.tuples(st.just("open"), ids, keys),
    st.tuples(st.just("rotate"), ids, keys),
    st.tuples(st.just("request_reset"), ids, keys),
    st.tuples(st.just("request_reset"), ids, keys),
    st.tuples(st.just("cancel_reset"), ids),
    st.tuples(st.just("complete_reset"), ids),
    st.tuples(st.just("complete_reset"), ids),
    st.tuples(st.just("cancel"), ids),
    st.tuples(st.just("wait")),
)


def _apply(ledger: Ledger, op: tuple[str, ...]) -> Receipt | None:
    kind = op[0]
    if kind == "wait":
        ledger.block()
        return None
    account_id = op[1]
    if account_id not in ledger.keys:  # never opened: sign nothing as it
        ledger.keys[account_id] = key_for(op[2] if len(op) > 2 else KEYS[0])
    if kind == "open":
        args = {"id": account_id, "public_key": public_hex(op[2]), "kyc_digest": DIGEST}
        return run(ledger, BANK0, "open_account", **args)
    if kind == "rotate":
        return run(ledger, account_id, "rotate_key", public_key=public_hex(op[2]))
    if kind == "request_reset":
        return run(ledger, BANK0, "request_reset", account=account_id, public_key=public_hex(op[2]))
    if kind == "cancel_reset":
        return run(ledger, account_id, "cancel_reset")
    if kind == "complete_reset":
        return run(ledger, BANK1, "complete_reset", account=account_id)
    assert kind == "cancel"
    return run(ledger, BANK0, "cancel_account", account=account_id)


def _sync_keys_and_nonces(ledger: Ledger) -> None:
    """Sign as each pool account with its current key and nonce, whatever happened."""
    by_public = {public_hex(name): key_for(name) for name in KEYS}
    for account_id in POOL:
        record = account(ledger, account_id)
        if record is not None:
            ledger.keys[account_id] = by_public[record["public_key"]]
            ledger.nonces[account_id] = record["nonce"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operation, min_size=8, max_size=30))
def test_ids_cancellation_and_resets_hold_under_any_sequence(ops: list[tuple[str, ...]]) -> None:
    ledger = new_ledger()
    used: set[str] = set()
    cancelled: set[str] = set()
    pending: set[str] = set()
    # Two accounts exist from the start, so that most operations have something to act on.
    for op in [("open", "p0", "key-0"), ("open", "p1", "key-1"), *ops]:
        was_used = op[0] == "open" and op[1] in used
        receipt = _apply(ledger, op)
        _sync_keys_and_nonces(ledger)
        if receipt is not None:
            if op[0] == "open":
                assert receipt.ok != was_used, receipt.code
                assert was_used <= (receipt.code in ("account_exists", "id_reused"))
            for name, fields in events(receipt):
                target = fields["account"]
                if name == "account_opened":
                    assert target not in used, "an id was reused"
                    used.add(target)
                elif name == "reset_requested":
                    assert target not in pending, "two resets pending at once"
                    pending.add(target)
                elif name in ("reset_cancelled", "reset_completed"):
                    assert target in pending
                    pending.discard(target)
                elif name == "account_cancelled":
                    assert target not in pending
                    cancelled.add(target)
        for account_id in POOL:
            record = account(ledger, account_id)
            stored_used = ledger.engine.query("identity", f"used_id/{account_id}") is True
            assert stored_used == (account_id in used)
            assert (record is not None) == (account_id in used)
            if record is None:
                continue
            assert (record["status"] == "cancelled") == (account_id in cancelled)
            has_cancel_listing = ledger.engine.query("identity", f"cancelled/{account_id}")
            assert (has_cancel_listing is not None) == (account_id in cancelled)
            assert ("pending_reset" in record) == (account_id in pending)
            assert record["status"] in ("active", "cancelled")
