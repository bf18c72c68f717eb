"""Attacks on confidential records, confidential receivables and the data gateway, in process.

Each test is what an adversary would try, run through the real engine (or the gateway's real
pipeline over an in-process chain), with the defence it must meet:

- a disclosure whose value nests deeper than the interpreter's recursion limit gets the same
  receipt whatever the stack depth of the executing node (receipts are consensus data), and a
  plaintext nested so deep is `ciphertext_rejected` for its reader;
- a record whose escrow wrap is garbage is stored (the documented limit) and names its sealer;
- a sealed record copied from the chain (with a wrap added for the copier) is not stored
  again, so a holder cannot offer its part under terms another seller agreed with the bank,
  nor one sealed financing finance two parts;
- a reader filling a record's added wraps cannot stop the regulator from rewrapping the
  record to a rotated escrow key;
- a public price on a part whose face value is committed is refused by code, also after
  governance lifted the kind's policy (no contract fault);
- a request body nested past the JSON parser's recursion limit is a `bad_request`, not a
  server error;
- the owner cannot name one of its own institution accounts (its gateway among them) as a
  dataset's data subject, and so cannot give the subject's consent itself;
- a consumer with a grant on one dataset cannot have a gateway serve it another dataset of the
  same owner under that grant; a malformed answer is `bad_answer` for the consumer;
- a sealed record's size does not tell the magnitude of an integer it holds (plaintexts are
  padded to a multiple of 256 bytes);
- a lagging node that proves reads under an old certified header cannot make a replaced
  (stolen) signing key pass: the chain checks the request's signature again, under the key
  the account holds when the access is logged;
- the owner replaces a wrap another reader gave a party (a reader cannot pre-empt the owner's
  share with a wrap no one can correct).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from consortia.client import ClientError, records
from consortia.crypto import suite as get_suite
from consortia.errors import CiphertextRejectedError, UnwrapFailedError
from consortia.execution.contracts import datashare_state
from consortia.execution.contracts.vault_state import ESCROW_WRAPS_MAX, WRAPS_MAX
from consortia.execution.engine import Receipt
from consortia.gateway.chain import Certified
from consortia.gateway.errors import RefusedError
from consortia.gateway.protocol import DataRequest, signed_request
from consortia.gateway.service import Gateway, create_app
from consortia.privacy import envelope
from consortia.privacy.envelope import (
    ESCROW_PARTY,
    Sealed,
    Wrapped,
    encode_sealed,
    open_sealed,
    rewrap,
    seal,
)
from tests.execution_helpers import CHAIN_ID, key_for
from tests.unit.test_contract_datashare import dataset_args, grant_args
from tests.unit.test_contract_datashare import ledger as datashare_ledger
from tests.unit.test_contract_datashare import ok as datashare_ok
from tests.unit.test_contract_datashare import refused as datashare_refused
from tests.unit.test_contract_datashare import send as datashare_send
from tests.unit.test_contract_governance import send
from tests.unit.test_contract_receivable_confidential import (
    FINANCING,
    GOODS_TERMS,
    call,
    issue_args,
    seal_policy,
)
from tests.unit.test_contract_vault import EngineSource
from tests.unit.test_gateway import QUERY, InProcessChain, World, world
from tests.vault_helpers import Sealing, chunked, sealing

TERMS = {"goods": "brake discs, 2,000 units", "unit_price": 31_250, "currency": "CNY"}


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, receipt
    return receipt


def code(receipt: Receipt) -> str:
    assert not receipt.ok, receipt
    return receipt.code


def at_stack_depth(extra_frames: int, action: Callable[[], Receipt]) -> Receipt:
    """`action` run `extra_frames` Python frames deeper than this call: a node whose driver,
    block sync or mirror reaches the engine through a longer call chain."""
    if extra_frames == 0:
        return action()
    return at_stack_depth(extra_frames - 1, action)


# ---------------------------------------------------------------------- vault: determinism


def test_a_deeply_nested_disclosure_gets_one_receipt_at_any_stack_depth() -> None:
    """A reader (any account may store a record of its own) discloses a "value" of nested
    lists. Decoding it recursed until the interpreter's limit: near the limit the receipt was
    `opening_mismatch` on one node and `contract_fault` (RecursionError) on a node executing a
    few hundred frames deeper, so validators and the mirror disagreed on the receipts root."""
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    limit = sys.getrecursionlimit()
    codes = set()
    for nesting in (limit // 2, limit - 300, limit + 10, 12_000):
        value = (b"\x91" * nesting + b"\xc0").hex()
        args = {"record": "T-1", "salt": "00" * 32, "value": chunked(value)}

        def disclose(args: dict[str, Any] = args) -> Receipt:
            return send(built.chain, "tier1", "vault", "reveal", args)

        for extra in (0, limit // 3, limit // 2):
            codes.add((nesting, code(at_stack_depth(extra, disclose))))
    assert {found for _nesting, found in codes} == {"opening_mismatch"}, sorted(codes)


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_a_sealer_s_deeply_nested_plaintext_is_refused_as_a_ciphertext(suite_name: str) -> None:
    """A dishonest sealer (or a gateway answering) encrypts a plaintext nested past the
    decoder's recursion limit: the reader gets `ciphertext_rejected`, as for any malformed
    plaintext, not a RecursionError out of the SDK, the CLI or the consumer's helper."""
    suite = get_suite(suite_name)
    private, public = suite.generate_encryption_keypair()
    _escrow_private, escrow_public = suite.generate_encryption_keypair()
    label, commitment = "t", suite.hash(b"any commitment")
    salt_field = b"\xa4salt\xc4\x20" + b"\x00" * 32
    plaintext = b"\x82" + salt_field + b"\xa5value" + b"\x91" * 10_000 + b"\xc0"
    data_key = suite.generate_aead_key()
    associated = envelope._associated_data(suite.name, label, commitment)
    ciphertext = suite.encrypt(data_key, plaintext, associated)
    context = envelope.wrap_context(label, commitment)
    keys = [
        Wrapped("bank", 1, suite.wrap_key(public, data_key, context)),
        Wrapped(ESCROW_PARTY, 1, suite.wrap_key(escrow_public, data_key, context)),
    ]
    sealed = Sealed(envelope.SEALED_VERSION, suite.name, label, commitment, ciphertext, keys)
    with pytest.raises(CiphertextRejectedError):
        open_sealed(suite, sealed, "bank", private)


def test_a_record_the_escrow_cannot_open_is_stored_and_its_sealer_named() -> None:
    """The documented limit (docs/privacy.md, "A dishonest sealer"): a wrap cannot be checked
    on chain, so a record whose escrow wrap is garbage is stored; the escrow finds out when it
    opens it, and the stored record names the account that signed it."""
    built = sealing()
    honest = built.seal(TERMS, ["carmaker", "tier1"])
    keys = [
        Wrapped(key.party, key.key_version, b"\x5a" * len(key.wrapped))
        if key.party == ESCROW_PARTY
        else key
        for key in honest.keys
    ]
    dishonest = msgspec.structs.replace(honest, keys=keys)
    ok(built.put("carmaker", "T-1", None, ["carmaker", "tier1"], sealed=dishonest))
    stored = built.stored("T-1")
    assert stored["owner"] == "carmaker"
    sealed = records.sealed_of(stored, ESCROW_PARTY)
    with pytest.raises(UnwrapFailedError):
        open_sealed(built.suite, sealed, ESCROW_PARTY, built.private_key(ESCROW_PARTY))
    assert open_sealed(built.suite, sealed, "tier1", built.private_key("tier1")).value == TERMS


# ---------------------------------------------------------------------- vault: wraps


def _fill_wraps(built: Sealing, record: str, party: str) -> None:
    """`party`, a reader, rotates its key and rewraps (with garbage: the contract cannot tell)
    until the record holds WRAPS_MAX added wraps."""
    for count in range(WRAPS_MAX):
        built.register(party)
        args = {
            "record": record,
            "party": party,
            "key_version": count + 2,
            "wrapped": "ab" * built.suite.wrapped_key_size,
        }
        ok(send(built.chain, party, "vault", "rewrap", args))
    built.register(party)
    args = {**args, "key_version": WRAPS_MAX + 2}
    assert code(send(built.chain, party, "vault", "rewrap", args)) == "too_many_wraps"


def test_a_reader_cannot_use_up_the_wraps_the_escrow_rewrap_needs() -> None:
    """Supervision never depends on a party's cooperation: a reader that fills the record's
    added wraps does not stop the regulator from wrapping it to a rotated escrow key."""
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    _fill_wraps(built, "T-1", "tier1")
    for rotation in range(ESCROW_WRAPS_MAX + 1):
        old_escrow = built.private_key(ESCROW_PARTY)
        built.set_escrow()
        sealed = records.sealed_of(built.stored("T-1"), ESCROW_PARTY)
        new = rewrap(built.suite, sealed, ESCROW_PARTY, old_escrow, built.reader(ESCROW_PARTY))
        args = {
            "record": "T-1",
            "party": ESCROW_PARTY,
            "key_version": new.key_version,
            "wrapped": new.wrapped.hex(),
        }
        receipt = send(built.chain, "reg", "vault", "rewrap", args)
        if rotation < ESCROW_WRAPS_MAX:
            ok(receipt)  # the regulator opens it with the newest escrow key
            opened = records.sealed_of(built.stored("T-1"), ESCROW_PARTY)
            assert (
                records.open_sealed(
                    built.suite, opened, ESCROW_PARTY, built.private_key(ESCROW_PARTY)
                ).value
                == TERMS
            )
        else:  # the escrow's own wraps are bounded too
            assert code(receipt) == "too_many_wraps"


def test_a_reader_cannot_pre_empt_the_owner_s_share_with_a_garbage_wrap() -> None:
    built = sealing()
    ok(built.put("carmaker", "T-1", TERMS, ["carmaker", "tier1"]))
    garbage = {
        "record": "T-1",
        "party": "bank",
        "key_version": 1,
        "wrapped": "5a" * built.suite.wrapped_key_size,
    }
    ok(send(built.chain, "tier1", "vault", "share", garbage))  # front-runs the owner's share
    source = EngineSource(built)
    share = records.share_arguments(
        source,
        built.suite,
        "T-1",
        "carmaker",
        built.private_key("carmaker"),
        new_reader="bank",
        verify=False,
    )
    ok(send(built.chain, "carmaker", "vault", "share", share))  # replaces tier1's garbage
    opened = records.open_stored(
        source, built.suite, "T-1", "bank", built.private_key("bank"), verify=False
    )
    assert opened.value == TERMS
    # Only the owner replaces a wrap, and only one another reader gave.
    again = {**garbage, "wrapped": "5b" * built.suite.wrapped_key_size}
    assert code(send(built.chain, "tier1", "vault", "share", again)) == "already_reader"
    assert code(send(built.chain, "carmaker", "vault", "share", share)) == "already_reader"


# ---------------------------------------------------------------------- receivable


def test_a_public_price_for_a_committed_face_value_is_refused_by_code() -> None:
    """Governance lifts the policy of a kind whose receivables carry no amount on chain: a
    public offer on such a part compared its price with None (a contract fault)."""
    built = sealing()
    seal_policy(built, kind="hidden", face_value="committed")
    ok(built.put("carmaker", "T-H", {**GOODS_TERMS, "amount": 5}, ["carmaker", "tier1"]))
    hidden = {key: value for key, value in issue_args(kind="hidden", terms="T-H").items()}
    del hidden["amount"]
    ok(call(built, "carmaker", "issue", hidden))
    ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"}))
    seal_policy(built, terms="optional", kind="hidden")
    public = {"part_id": "INV-1#0", "bank": "bank", "price": 1}
    assert code(call(built, "tier1", "offer_finance", public)) == "face_value_committed"
    assert code(call(built, "bank", "finance", public)) == "face_value_committed"
    # The confidential path stays open.
    ok(built.put("tier1", "FIN-H", FINANCING, ["tier1", "bank"]))
    offer = {"part_id": "INV-1#0", "bank": "bank", "financing_terms": "FIN-H"}
    ok(call(built, "tier1", "offer_finance", offer))
    ok(call(built, "bank", "finance", offer))


# ---------------------------------------------------------------------- datashare: consent


@pytest.mark.parametrize("subject", ["gw0", "ops0", "clerk0"])
def test_the_owner_cannot_name_one_of_its_own_accounts_the_data_subject(subject: str) -> None:
    """Consent is the subject's, not the owner's: a dataset whose subject is the owner's own
    institution account (its gateway, or the office granting) lets the owner, or a stolen
    gateway key, give the consent the grant waits for."""
    chain = datashare_ledger()
    args = dataset_args(subject=subject)
    datashare_refused(chain, "ops0", "register_dataset", args, "bad_subject")


def test_a_customer_of_the_owner_or_another_member_s_account_may_be_the_subject() -> None:
    chain = datashare_ledger()
    datashare_ok(datashare_send(chain, "ops0", "register_dataset", dataset_args()))  # the firm
    other = dataset_args(dataset="bank-1-kyc", subject="credit1")  # bank-1 as the subject
    datashare_ok(datashare_send(chain, "ops0", "register_dataset", other))
    grant = grant_args(dataset="bank-1-kyc", consumer="bank-2", consent_required=True)
    number = datashare_ok(datashare_send(chain, "ops0", "grant", grant)).result["n"]
    datashare_ok(datashare_send(chain, "credit1", "consent", {"grant": number}))


# ---------------------------------------------------------------------- copied terms


def test_a_sealed_record_cannot_be_stored_again_by_someone_else() -> None:
    """tier2, holding a part of its own, copies the financing terms tier1 sealed for the bank
    (the chain shows them), names itself a reader with a wrap the contract cannot check, and
    offers its part to the bank under terms the bank agreed with tier1: the bank opens them,
    sees the price it agreed, and finances tier2's part. The copy must not be stored."""
    built = sealing()
    ok(call(built, "carmaker", "issue", issue_args(kind="general")))
    ok(call(built, "tier1", "accept", {"receivable_id": "INV-1"}))
    split = {"part_id": "INV-1#0", "to": "tier2", "amount": 10_000_000}
    ok(call(built, "tier1", "split_transfer", split))
    ok(built.put("tier1", "FIN-1", FINANCING, ["tier1", "bank"]))
    original = records.sealed_of(built.stored("FIN-1"))
    nominal = Wrapped("tier2", 1, b"\xab" * built.suite.wrapped_key_size)
    keys = sorted([*original.keys, nominal], key=lambda key: key.party)
    copy = msgspec.structs.replace(original, keys=keys)
    assert code(built.put("tier2", "FIN-X", None, ["bank", "tier1", "tier2"], sealed=copy)) == (
        "commitment_exists"
    )
    # The same record under another id, by its own owner, is refused too (a copy is a copy).
    assert code(built.put("tier1", "FIN-2", None, ["tier1", "bank"], sealed=original)) == (
        "commitment_exists"
    )
    offer = {"part_id": "INV-1#1", "bank": "bank", "financing_terms": "FIN-X"}
    assert code(call(built, "tier2", "offer_finance", offer)) == "unknown_record"


# ---------------------------------------------------------------------- the gateway


def test_a_deeply_nested_request_body_is_a_bad_request() -> None:
    state = world()
    body = b"[" * 8_000 + b"]" * 8_000  # within the 16 KiB a request may have

    async def exchange() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state.gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            return await http.post("/v1/fetch", content=body)

    response = asyncio.run(exchange())
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_request")


def test_a_grant_on_one_dataset_serves_no_other_dataset_of_the_owner() -> None:
    """The chain's access record names the grant's dataset, not what the gateway ran: only
    the gateway's check stops a consumer granted one dataset from reading another one the
    same gateway serves, logged as an access to the granted one."""
    state = world()
    second = {
        "dataset": "firm-ledger",
        "name": "Ledger of firm-7",
        "schema_digest": "6d" * 32,
        "location": "bank-0 ledger",
        "classification": "restricted",
        "gateways": ["gw0"],
    }
    state.send("ops0", "register_dataset", second)
    state.gateway.queries["firm-ledger"] = QUERY
    state.refused(state.request(dataset="firm-ledger", grant=0), "wrong_dataset")


@pytest.mark.parametrize(
    "damage",
    [
        {"access": None},
        {"height": "twelve"},
        {"tx_hash": None},
        {"answer_digest": None},
    ],
)
def test_a_malformed_answer_is_a_bad_answer_for_the_consumer(damage: dict[str, Any]) -> None:
    """A lying or broken gateway leaves out or garbles the access record's coordinates: the
    consumer's helper says `bad_answer` (a ClientError, as for every other bad answer), not a
    KeyError or ValueError."""
    state = world()
    request = state.request()
    answer = state.gateway.fetch(request.as_json())
    broken = {key: value for key, value in answer.items() if key not in damage}
    broken.update({key: value for key, value in damage.items() if value is not None})
    with pytest.raises(ClientError) as refusal:
        state.consumers["credit1"].open(request, broken)
    assert refusal.value.code == "bad_answer"


@dataclass
class LaggingChain(InProcessChain):
    """A node that proves every read under an old, genuinely certified header: each proof
    checks, only the height is stale."""

    frozen_at: int = 0

    def read(self, contract: str, key: str) -> Certified:
        return Certified(self.ledger.engine.query(contract, key, self.frozen_at), self.frozen_at)


def _stolen_key_request(state: World) -> DataRequest:
    """credit1 replaces its signing key (the old one was stolen); the thief signs a request
    with the old key."""
    old_private, _old_public = state.ledger.keys["credit1"]
    new_private, new_public = key_for("credit1-rotated")
    rotate = state.ledger.tx("credit1", "identity", "rotate_key", {"public_key": new_public.hex()})
    (receipt,) = state.ledger.block(rotate)
    assert receipt.ok, receipt
    state.ledger.keys["credit1"] = (new_private, new_public)
    unsigned = DataRequest(
        "credit1", "firm-credit", 0, {"firm": "firm-7"}, state.now_ms(), "5e" * 16
    )
    genesis = state.chain.genesis_hash
    return signed_request(get_suite("intl"), old_private, CHAIN_ID, genesis, unsigned)


def test_a_replaced_signing_key_is_refused_by_an_up_to_date_gateway() -> None:
    state = world()
    request = _stolen_key_request(state)
    state.refused(request, "bad_signature")


def test_a_lagging_node_does_not_make_the_gateway_accept_a_replaced_signing_key() -> None:
    """The gateway's certified reads have no freshness bound, so under the old header the
    stolen key verifies at the gateway (its replay window admitted the request, the step
    after the signature); the chain checks the signature again under the key the account
    holds when the access is logged, and refuses: no access logged, no answer given."""
    state = world()
    lagging = LaggingChain(state.ledger, frozen_at=state.ledger.height)
    request = _stolen_key_request(state)
    gateway = Gateway(
        "intl",
        lagging,
        state.gateway.keys,
        state.rows,
        {"firm-credit": QUERY},
        clock_ms=state.now_ms,
    )
    accesses = datashare_state.access_count(state.ledger.engine.query)
    with pytest.raises(RefusedError) as refusal:
        gateway.fetch(request.as_json())
    assert refusal.value.code == "bad_signature"
    assert len(gateway.window) == 1  # the gateway itself accepted the signature
    assert datashare_state.access_count(state.ledger.engine.query) == accesses


# ---------------------------------------------------------------------- sizes


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_a_sealed_record_s_size_does_not_tell_an_amount_s_magnitude(suite_name: str) -> None:
    built = sealing(("carmaker", "tier1"), suite_name=suite_name)
    readers = [built.reader("carmaker"), built.reader("tier1")]
    escrow = built.reader(ESCROW_PARTY)
    values = [{**GOODS_TERMS, "amount": amount} for amount in (100, 60_000, 87_654_321, 10**12)]
    sizes = {len(encode_sealed(seal(built.suite, "t", v, readers, escrow))) for v in values}
    assert len(sizes) == 1, sizes
