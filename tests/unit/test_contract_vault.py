"""Encryption keys in `identity`, the escrow key in `regulator` and the `vault` contract.

Everything runs through the real engine, with records really sealed (consortia.privacy) and
opened again with the parties' private keys: an account registers and rotates its encryption
key (versions, history, bounds, validation on both suites); only a passed proposal sets or
rotates the escrow key; the vault refuses, with its own code, every record that breaks a
rule, and a weakened rule lets those records through (so the refusal tests can fail); a
reader rewraps after a rotation and opens the record with its new key; a reader shares; a
party discloses the plaintext, which the contract checks against the commitment and never
stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consortia.client import records
from consortia.crypto import suite as get_suite
from consortia.execution.contract import GAS_CRYPTO, Context, Contract, SealedView, method
from consortia.execution.contracts import identity_state, regulator_state, vault, vault_state
from consortia.execution.contracts.vault_state import READERS_MAX, WRAPS_MAX
from consortia.execution.engine import Receipt
from consortia.privacy import envelope
from consortia.privacy.envelope import (
    ESCROW_PARTY,
    Reader,
    Sealed,
    Wrapped,
    decode_sealed,
    encode_sealed,
    open_sealed,
    rewrap,
    seal,
)
from consortia.types.encoding import encode
from tests.execution_helpers import make_ledger
from tests.unit.test_contract_governance import executed, propose, send, snapshot
from tests.vault_helpers import Sealing, chunked, current_version, sealing

SUITES = ("intl", "gm")
TERMS = {"goods": "brake discs, 2,000 units", "unit_price": 31_250, "currency": "CNY"}


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, receipt
    return receipt


def code(receipt: Receipt) -> str:
    assert not receipt.ok, receipt
    return receipt.code


def set_key(built: Sealing, account: str, public_key: Any) -> Receipt:
    return send(built.chain, account, "identity", "set_encryption_key", {"public_key": public_key})


def with_record(built: Sealing, record: Sealed, **changes: Any) -> Sealed:
    return Sealed(**{**{f: getattr(record, f) for f in Sealed.__struct_fields__}, **changes})


# ---------------------------------------------------------------------- encryption keys


@pytest.mark.parametrize("suite_name", SUITES)
def test_an_account_registers_and_rotates_its_encryption_key(suite_name: str) -> None:
    built = sealing(("tier1",), suite_name=suite_name, escrow=False)
    first = built.keys["tier1"][0][1].hex()
    read = built.chain.engine.query
    assert identity_state.read_encryption_key(read, "tier1") == (1, first)
    receipt = built.register("tier1")
    second = built.keys["tier1"][1][1].hex()
    assert [(e.name, e.fields["version"]) for e in receipt.events] == [("encryption_key_set", 2)]
    assert identity_state.read_encryption_key(read, "tier1") == (2, second)
    assert identity_state.read_encryption_key(read, "tier1", 1) == (1, first)
    assert identity_state.read_encryption_key(read, "tier1", 3) is None
    assert identity_state.read_encryption_key(read, "tier2") is None
    key_size = get_suite(suite_name).encryption_public_key_size
    assert len(first) == 2 * key_size


@pytest.mark.parametrize("suite_name", SUITES)
def test_encryption_keys_are_validated_with_the_chain_s_suite(suite_name: str) -> None:
    built = sealing(("tier1",), suite_name=suite_name, escrow=False)
    other = get_suite("gm" if suite_name == "intl" else "intl")
    before = snapshot(built.chain)
    current = built.keys["tier1"][0][1].hex()
    for bad in (
        other.generate_encryption_keypair()[1].hex(),  # the other suite's key
        "00" * get_suite(suite_name).encryption_public_key_size,  # no usable key
        current.upper(),
        current[:-1],
        "zz" * 32,
        "",
        12,
        "ab" * 200,
    ):
        assert code(set_key(built, "tier1", bad)) == "bad_encryption_key", bad
    assert code(set_key(built, "tier1", current)) == "key_reused"
    assert snapshot(built.chain) == before


def test_the_key_history_is_bounded_and_versions_keep_counting() -> None:
    built = sealing(("tier1",), escrow=False)
    for _ in range(identity_state.ENCRYPTION_KEYS_KEPT + 2):
        built.register("tier1")
    record = identity_state.read_encryption_keys(built.chain.engine.query, "tier1")
    assert record is not None
    last = identity_state.ENCRYPTION_KEYS_KEPT + 3
    assert record["current"] == last
    assert [k["version"] for k in record["keys"]] == list(range(4, last + 1))
    assert identity_state.read_encryption_key(built.chain.engine.query, "tier1", 3) is None


def test_a_frozen_or_unknown_signer_registers_nothing() -> None:
    built = sealing(("tier1",), escrow=False)
    pk = built.suite.generate_encryption_keypair()[1].hex()
    # Only the account itself: a contract caller is not an account of identity.
    assert identity_state.read_encryption_key(built.chain.engine.query, "contract:vault") is None
    executed(built.chain, "freeze_account", account="tier1")
    receipt = set_key(built, "tier1", pk)
    assert code(receipt) == "account_frozen"


# ---------------------------------------------------------------------- the escrow key


@pytest.mark.parametrize("suite_name", SUITES)
def test_only_a_passed_proposal_sets_and_rotates_the_escrow_key(suite_name: str) -> None:
    built = sealing((), suite_name=suite_name, escrow=False)
    read = built.chain.engine.query
    assert regulator_state.read_escrow_key(read) is None
    public_key = built.suite.generate_encryption_keypair()[1].hex()
    for signer in ("reg", "alice", "tier1"):
        receipt = send(
            built.chain, signer, "regulator", "set_escrow_key", {"public_key": public_key}
        )
        assert code(receipt) == "not_authorised"
    assert regulator_state.read_escrow_key(read) is None
    # A proposal is checked when it is made.
    assert code(propose(built.chain, "alice", "set_escrow_key", public_key="00")) == (
        "bad_encryption_key"
    )
    built.set_escrow()
    first = built.keys[ESCROW_PARTY][0][1].hex()
    assert regulator_state.read_escrow_key(read) == (1, first)
    built.set_escrow()
    second = built.keys[ESCROW_PARTY][1][1].hex()
    assert regulator_state.read_escrow_key(read) == (2, second)
    assert regulator_state.read_escrow_key(read, 1) == (1, first)
    assert code(propose(built.chain, "alice", "set_escrow_key", public_key=first)) == "key_reused"


def test_the_escrow_party_is_the_envelope_s() -> None:
    assert regulator_state.ESCROW_PARTY == envelope.ESCROW_PARTY
    assert READERS_MAX == envelope.READERS_MAX


# ---------------------------------------------------------------------- put


@pytest.mark.parametrize("suite_name", SUITES)
def test_a_record_is_stored_as_ciphertext_and_every_reader_opens_it(suite_name: str) -> None:
    built = sealing(suite_name=suite_name)
    receipt = ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    stored = built.stored("T-1")
    assert stored["owner"] == "carmaker"
    assert stored["readers"] == ["carmaker", "tier1"]
    assert stored["versions"] == {"carmaker": 1, ESCROW_PARTY: 1, "tier1": 1}
    assert stored["suite"] == suite_name
    (event,) = receipt.events
    assert event.name == "stored" and "sealed" not in event.fields
    sealed = decode_sealed(stored["sealed"])
    for party in ("carmaker", "tier1", ESCROW_PARTY):
        assert open_sealed(built.suite, sealed, party, built.private_key(party)).value == TERMS
    with pytest.raises(envelope.PrivacyError):
        open_sealed(built.suite, sealed, "bank", built.private_key("bank"))


def refusals(built: Sealing) -> dict[str, Callable[[], Receipt]]:
    """A record breaking one rule each, by the code the vault refuses it with."""
    readers = ["carmaker", "tier1"]
    unregistered = Reader("outsider", 1, built.suite.generate_encryption_keypair()[1])
    escrow = built.reader(ESCROW_PARTY)

    def missing_reader() -> Receipt:
        only_one = seal(built.suite, "t", TERMS, [built.reader("carmaker")], escrow)
        return built.put("carmaker", "X", None, readers, sealed=only_one)

    def stale_reader() -> Receipt:
        sealed = built.seal(TERMS, readers)
        built.register("tier1")
        return built.put("carmaker", "X", None, readers, sealed=sealed)

    def no_key() -> Receipt:
        sealed = seal(built.suite, "t", TERMS, [built.reader("carmaker"), unregistered], escrow)
        return built.put("carmaker", "X", None, ["carmaker", "outsider"], sealed=sealed)

    def unknown_party() -> Receipt:
        return built.put("carmaker", "X", None, ["carmaker"], sealed=built.seal(TERMS, readers))

    def stale_escrow() -> Receipt:
        sealed = built.seal(TERMS, readers)
        built.set_escrow()
        return built.put("carmaker", "X", None, readers, sealed=sealed)

    def wrong_suite() -> Receipt:
        other = get_suite("gm" if built.suite.name == "intl" else "intl")
        foreign = [
            Reader(p, 1, other.generate_encryption_keypair()[1]) for p in [*readers, ESCROW_PARTY]
        ]
        sealed = seal(other, "t", TERMS, foreign[:2], foreign[2])
        return built.put("carmaker", "X", None, readers, sealed=sealed)

    def malformed() -> Receipt:
        text = encode_sealed(built.seal(TERMS, readers))
        args = {"record": "X", "sealed": chunked(text[:-2]), "readers": readers}
        return send(built.chain, "carmaker", "vault", "put", args)

    def tampered_key() -> Receipt:
        sealed = built.seal(TERMS, readers)
        keys = [Wrapped(k.party, k.key_version, k.wrapped[:-1]) for k in sealed.keys]
        text = encode(with_record(built, sealed, keys=keys)).hex()
        args = {"record": "X", "sealed": chunked(text), "readers": readers}
        return send(built.chain, "carmaker", "vault", "put", args)

    def too_large() -> Receipt:
        args = {"record": "X", "sealed": ["ab" * 2048] * 9, "readers": readers}
        return send(built.chain, "carmaker", "vault", "put", args)

    def taken() -> Receipt:
        ok(built.put("carmaker", "X", TERMS, readers))
        return built.put("carmaker", "X", TERMS, readers)

    def escrow_as_reader() -> Receipt:
        return send(
            built.chain,
            "carmaker",
            "vault",
            "put",
            {
                "record": "X",
                "sealed": chunked(encode_sealed(built.seal(TERMS, readers))),
                "readers": [*readers, ESCROW_PARTY],
            },
        )

    def unknown_reader() -> Receipt:
        return send(
            built.chain,
            "carmaker",
            "vault",
            "put",
            {"record": "X", "sealed": "00", "readers": ["carmaker", "ghost"]},
        )

    return {
        "missing_reader_key": missing_reader,
        "stale_reader_key": stale_reader,
        "no_encryption_key": no_key,
        "unknown_party": unknown_party,
        "stale_escrow_key": stale_escrow,
        "wrong_suite": wrong_suite,
        "malformed_sealed_record": malformed,
        "malformed_sealed_record/key": tampered_key,
        "record_too_large": too_large,
        "record_exists": taken,
        "bad_argument": escrow_as_reader,
        "unknown_account": unknown_reader,
    }


RULES = [
    "missing_reader_key",
    "stale_reader_key",
    "no_encryption_key",
    "unknown_party",
    "stale_escrow_key",
    "wrong_suite",
    "malformed_sealed_record",
    "malformed_sealed_record/key",
    "record_too_large",
    "record_exists",
    "bad_argument",
    "unknown_account",
]


@pytest.mark.parametrize("rule", RULES)
def test_put_refuses_each_broken_rule_and_changes_nothing(rule: str) -> None:
    built = sealing()
    attempt = refusals(built)[rule]
    receipt = attempt()
    assert code(receipt) == rule.split("/", maxsplit=1)[0]
    if rule != "record_exists":
        assert built.chain.engine.query("vault", "record/X") is None


def test_a_record_before_any_escrow_key_is_refused() -> None:
    built = sealing(escrow=False)
    escrow = Reader(ESCROW_PARTY, 1, built.suite.generate_encryption_keypair()[1])
    sealed = seal(built.suite, "t", TERMS, [built.reader("carmaker")], escrow)
    assert code(built.put("carmaker", "X", None, ["carmaker"], sealed=sealed)) == "no_escrow_key"


WEAKENED = [
    "missing_reader_key",
    "stale_reader_key",
    "no_encryption_key",
    "unknown_party",
    "stale_escrow_key",
]


@pytest.mark.parametrize("rule", WEAKENED)
def test_a_weakened_key_check_lets_the_broken_record_in(
    rule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal tests above are not vacuous: with the wrapped keys unchecked (the vault
    taking whatever a record claims), each of those records is stored."""

    def unchecked(ctx: Context, view: SealedView, readers: list[str]) -> dict[str, int]:
        return dict(view.readers)

    monkeypatch.setattr(vault, "_wrapped_versions", unchecked)
    built = sealing()
    assert refusals(built)[rule]().ok


# ---------------------------------------------------------------------- rewrap and share


@pytest.mark.parametrize("suite_name", SUITES)
def test_a_reader_rewraps_to_its_new_key_and_opens_with_it(suite_name: str) -> None:
    built = sealing(suite_name=suite_name)
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    sealed = decode_sealed(built.stored("T-1")["sealed"])
    built.register("tier1")
    new = rewrap(built.suite, sealed, "tier1", built.private_key("tier1", 1), built.reader("tier1"))
    args = {"record": "T-1", "party": "tier1", "key_version": 2, "wrapped": new.wrapped.hex()}
    receipt = ok(send(built.chain, "tier1", "vault", "rewrap", args))
    assert [e.name for e in receipt.events] == ["rewrapped"]
    stored = built.stored("T-1")
    assert stored["versions"]["tier1"] == 2
    (wrap,) = stored["wraps"]
    # The party's client puts its newest wrap in place of the old one and opens the record.
    keys = [
        Wrapped("tier1", wrap["key_version"], bytes.fromhex(wrap["wrapped"]))
        if k.party == "tier1"
        else k
        for k in sealed.keys
    ]
    renewed = with_record(built, sealed, keys=keys)
    assert open_sealed(built.suite, renewed, "tier1", built.private_key("tier1")).value == TERMS
    # Refusals.
    before = snapshot(built.chain)
    assert code(send(built.chain, "tier1", "vault", "rewrap", args)) == "already_wrapped"
    assert code(send(built.chain, "carmaker", "vault", "rewrap", args)) == "not_authorised"
    stale = {**args, "key_version": 1}
    assert code(send(built.chain, "tier1", "vault", "rewrap", stale)) == "stale_key_version"
    outsider = {**args, "party": "bank"}
    assert code(send(built.chain, "bank", "vault", "rewrap", outsider)) == "not_reader"
    missing = {**args, "record": "T-9"}
    assert code(send(built.chain, "tier1", "vault", "rewrap", missing)) == "unknown_record"
    bad = {**args, "wrapped": "xyz", "key_version": 3}
    built.register("tier1")
    assert code(send(built.chain, "tier1", "vault", "rewrap", bad)) == "bad_argument"
    short = {**bad, "wrapped": new.wrapped[:-1].hex()}
    assert code(send(built.chain, "tier1", "vault", "rewrap", short)) == "bad_wrapped_key"
    built.keys["tier1"].pop()  # the chain kept none of that
    after = snapshot(built.chain)
    after.pop(b"identity/encryption_key/tier1")
    before.pop(b"identity/encryption_key/tier1")
    assert after == before


def test_the_regulator_rewraps_for_the_escrow_key_after_rotation() -> None:
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    sealed = decode_sealed(built.stored("T-1")["sealed"])
    old_escrow = built.private_key(ESCROW_PARTY)
    built.set_escrow()
    new = rewrap(built.suite, sealed, ESCROW_PARTY, old_escrow, built.reader(ESCROW_PARTY))
    args = {"record": "T-1", "party": ESCROW_PARTY, "key_version": 2, "wrapped": new.wrapped.hex()}
    assert code(send(built.chain, "carmaker", "vault", "rewrap", args)) == "not_authorised"
    ok(send(built.chain, "reg", "vault", "rewrap", args))
    assert built.stored("T-1")["versions"][ESCROW_PARTY] == 2
    assert current_version(built.chain, ESCROW_PARTY) == 2


def test_a_reader_shares_a_record_and_the_new_reader_opens_it() -> None:
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    sealed = decode_sealed(built.stored("T-1")["sealed"])
    new = rewrap(built.suite, sealed, "tier1", built.private_key("tier1"), built.reader("tier1"))
    # The holder wraps the same data key to the bank (rewrap's wrap, to the bank's key).
    to_bank = Reader("bank", 1, built.keys["bank"][0][1])
    wrapped = built.suite.wrap_key(
        to_bank.public_key,
        _data_key(built, sealed, "tier1"),
        envelope.wrap_context(sealed.label, sealed.commitment),
    )
    del new
    args = {"record": "T-1", "party": "bank", "key_version": 1, "wrapped": wrapped.hex()}
    assert code(send(built.chain, "outsider", "vault", "share", args)) == "not_reader"
    receipt = ok(send(built.chain, "tier1", "vault", "share", args))
    assert receipt.events[0].fields == {
        "record": "T-1",
        "party": "bank",
        "key_version": 1,
        "by": "tier1",
    }
    assert built.stored("T-1")["readers"] == ["bank", "carmaker", "tier1"]
    keys = sorted([*sealed.keys, Wrapped("bank", 1, wrapped)], key=lambda k: k.party)
    shared = with_record(built, sealed, keys=keys)
    assert open_sealed(built.suite, shared, "bank", built.private_key("bank")).value == TERMS
    assert code(send(built.chain, "tier1", "vault", "share", args)) == "already_reader"
    no_key = {**args, "party": "outsider"}
    assert code(send(built.chain, "tier1", "vault", "share", no_key)) == "no_encryption_key"


def test_added_wraps_are_bounded() -> None:
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    for count in range(WRAPS_MAX + 1):
        built.register("tier1")
        args = {
            "record": "T-1",
            "party": "tier1",
            "key_version": count + 2,
            "wrapped": "ab" * built.suite.wrapped_key_size,
        }
        receipt = send(built.chain, "tier1", "vault", "rewrap", args)
        if count < WRAPS_MAX:
            ok(receipt)
        else:
            assert code(receipt) == "too_many_wraps"
    assert len(built.stored("T-1")["wraps"]) == WRAPS_MAX


def _data_key(built: Sealing, sealed: Sealed, party: str) -> bytes:
    entry = next(k for k in sealed.keys if k.party == party)
    return built.suite.unwrap_key(
        built.private_key(party),
        entry.wrapped,
        envelope.wrap_context(sealed.label, sealed.commitment),
    )


# ---------------------------------------------------------------------- reveal


def test_a_disclosure_is_checked_against_the_commitment_and_not_stored() -> None:
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    sealed = decode_sealed(built.stored("T-1")["sealed"])
    opened = open_sealed(built.suite, sealed, "tier1", built.private_key("tier1"))
    right = {"record": "T-1", "salt": opened.salt.hex(), "value": encode(TERMS).hex()}
    wrong_value = {**right, "value": encode({**TERMS, "unit_price": 1}).hex()}
    wrong_salt = {**right, "salt": "00" * 32}
    before = snapshot(built.chain)
    assert code(send(built.chain, "tier1", "vault", "reveal", wrong_value)) == "opening_mismatch"
    assert code(send(built.chain, "tier1", "vault", "reveal", wrong_salt)) == "opening_mismatch"
    assert code(send(built.chain, "outsider", "vault", "reveal", right)) == "not_reader"
    assert code(send(built.chain, "tier1", "vault", "reveal", {**right, "value": "zz"})) == (
        "bad_argument"
    )
    assert snapshot(built.chain) == before
    receipt = ok(send(built.chain, "reg", "vault", "reveal", right))
    assert receipt.events[0].fields == {"record": "T-1", "by": "reg"}
    assert built.stored("T-1")["revealed"] == {"by": "reg", "height": built.chain.height}
    assert code(send(built.chain, "tier1", "vault", "reveal", right)) == "already_revealed"
    # The value is in the disclosing transaction's arguments only, never in state.
    state = b"".join(
        built.chain.engine.state.get(key) or b""
        for key in built.chain.engine.state.keys_with_prefix(b"")
    )
    assert b"brake discs" not in state and b"brake discs".hex().encode() not in state


def test_a_large_record_travels_and_is_disclosed_in_chunks() -> None:
    built = sealing()
    large = {"goods": "brake disc " * 600, "lines": list(range(300))}
    ok(built.put("carmaker", "T-L", large, ["carmaker", "tier1"]))
    assert len(built.stored("T-L")["sealed"]) > 2 * 4096
    sealed = decode_sealed(built.stored("T-L")["sealed"])
    opened = open_sealed(built.suite, sealed, "tier1", built.private_key("tier1"))
    disclosure = {"record": "T-L", "salt": opened.salt.hex(), "value": chunked(encode(large).hex())}
    ok(send(built.chain, "tier1", "vault", "reveal", disclosure))


# ---------------------------------------------------------------------- the host's suite checks


class SuiteProbe(Contract):
    """Asks the host the suite questions a contract may ask."""

    name = "probe"
    version = 1

    @method("ask")
    def ask(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        before = ctx.meter.used
        valid = ctx.valid_encryption_key(str(args["key"]))
        cost = ctx.meter.used - before
        return {"suite": ctx.suite, "valid": valid, "cost": cost}


@pytest.mark.parametrize("suite_name", SUITES)
def test_a_contract_learns_the_chain_s_suite_through_its_context(suite_name: str) -> None:
    chain = make_ledger([SuiteProbe], {"alice": ("bank-0", 0)}, suite_name=suite_name)
    suite = get_suite(suite_name)
    key = suite.generate_encryption_keypair()[1].hex()
    (receipt,) = chain.block(chain.tx("alice", "probe", "ask", {"key": key}))
    assert receipt.result == {"suite": suite_name, "valid": True, "cost": GAS_CRYPTO + len(key)}
    (receipt,) = chain.block(chain.tx("alice", "probe", "ask", {"key": "0" * len(key)}))
    assert receipt.result["valid"] is False


# ---------------------------------------------------------------------- the client's helpers


class EngineSource:
    """The client's `StateSource` over the engine's committed state (no proofs here)."""

    def __init__(self, built: Sealing) -> None:
        self.built = built

    def state(
        self, contract: str, key: str, height: int | None = None, *, verify: bool = False
    ) -> Any:
        return self.built.chain.engine.query(contract, key, height)


@pytest.mark.parametrize("suite_name", SUITES)
def test_the_client_s_record_helpers_drive_the_vault(suite_name: str) -> None:
    """consortia.client.records builds what this contract takes, and opens what it keeps."""
    built = sealing(suite_name=suite_name)
    source = EngineSource(built)
    value = {**TERMS, "lines": list(range(400))}  # long enough to travel in chunks
    sealed = records.seal_for(source, built.suite, "t", value, ["carmaker", "tier1"], verify=False)
    put = records.put_arguments("T-1", sealed, ["carmaker", "tier1"])
    ok(send(built.chain, "carmaker", "vault", "put", put))
    opened = records.open_stored(
        source, built.suite, "T-1", "tier1", built.private_key("tier1"), verify=False
    )
    assert opened.value == value
    old = built.private_key("tier1")
    built.register("tier1")
    args = records.rewrap_arguments(source, built.suite, "T-1", "tier1", old, verify=False)
    ok(send(built.chain, "tier1", "vault", "rewrap", args))
    again = records.open_stored(
        source, built.suite, "T-1", "tier1", built.private_key("tier1"), verify=False
    )
    assert again.value == value
    share = records.share_arguments(
        source,
        built.suite,
        "T-1",
        "tier1",
        built.private_key("tier1"),
        new_reader="bank",
        verify=False,
    )
    ok(send(built.chain, "tier1", "vault", "share", share))
    by_bank = records.open_stored(
        source, built.suite, "T-1", "bank", built.private_key("bank"), verify=False
    )
    assert by_bank.value == value
    ok(send(built.chain, "bank", "vault", "reveal", records.reveal_arguments("T-1", by_bank)))


def test_the_sdk_spells_the_keys_it_reads_as_their_owners_do() -> None:
    # The SDK may not import the engine's contracts (docs/ARCHITECTURE.md), so it spells the
    # two keys it reads itself; these must stay the owners' spellings.
    assert records.encryption_key_key("firm-7") == identity_state.encryption_key_key("firm-7")
    assert records.record_key("rec-1") == vault_state.record_key("rec-1")
    assert records.VAULT == vault_state.CONTRACT
    assert records.IDENTITY == identity_state.CONTRACT
    assert records.REGULATOR == regulator_state.CONTRACT
    assert records.ESCROW_KEY == regulator_state.ESCROW_KEY


@pytest.mark.parametrize(
    "record",
    [
        None,
        {"current": 1, "keys": [{"version": 1, "public_key": "ab" * 32, "height": 3}]},
        {
            "current": 3,
            "keys": [
                {"version": 2, "public_key": "01" * 32, "height": 5},
                {"version": 3, "public_key": "02" * 32, "height": 9},
            ],
        },
        # The current version no longer among the kept keys: no current key.
        {"current": 4, "keys": [{"version": 3, "public_key": "02" * 32, "height": 9}]},
    ],
)
def test_the_sdk_reads_a_versioned_key_record_as_its_owner_does(record: Any) -> None:
    owner = identity_state.versioned_key(record, None)
    expected = None if owner is None else (owner[0], bytes.fromhex(owner[1]))
    assert records._current(record) == expected
