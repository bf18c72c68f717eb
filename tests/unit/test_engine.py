"""The execution engine: admission codes, atomicity, metering, queries at a height, determinism."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import consortia
from consortia.execution.contract import TX_GAS_LIMIT, Context, Contract, method
from consortia.execution.contracts.asset import Asset
from consortia.execution.engine import EXPIRY_BLOCKS_MAX
from consortia.types.encoding import decode, encode
from consortia.types.signing import SigningDomain, sign, transaction_id
from consortia.types.state_proof import verify_answer, verify_proof
from consortia.types.transaction import Transaction, TransactionBody
from tests.execution_helpers import CHAIN_ID, SUITE, Ledger, make_ledger

SOURCE_ROOT = Path(consortia.__file__).resolve().parent.parent
ACCOUNTS = {"treasury": ("bank-0", 10**9), "alice": ("bank-1", 500), "bob": ("bank-2", 0)}


class Spender(Contract):
    """Test-only: writes then fails, loops until out of gas, or raises a bug."""

    name = "spender"
    version = 1

    @method("write_then_fail")
    def write_then_fail(self, ctx: Context, args: dict[str, object]) -> None:
        ctx.put("touched", True)
        ctx.fail("deliberate", "failing after a write")

    @method("burn")
    def burn(self, ctx: Context, args: dict[str, object]) -> None:
        while True:
            ctx.get("anything")

    @method("bug")
    def bug(self, ctx: Context, args: dict[str, object]) -> None:
        ctx.put("touched", True)
        raise KeyError("a contract bug")

    @method("float")
    def store_float(self, ctx: Context, args: dict[str, object]) -> None:
        ctx.put("price", 1.5)


def ledger() -> Ledger:
    return make_ledger([Asset, Spender], ACCOUNTS)


def test_transfer_moves_money_and_emits_an_event() -> None:
    book = ledger()
    (receipt,) = book.block(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 200}))
    assert receipt.ok and receipt.code == "ok"
    assert [event.name for event in receipt.events] == ["transferred"]
    assert book.engine.query("asset", "balance/CNY/alice") == 300
    assert book.engine.query("asset", "balance/CNY/bob") == 200


def _signed(book: Ledger, signer: str = "alice", **changes: object) -> bytes:
    private_key, public_key = book.keys[signer]
    fields: dict[str, object] = {
        "chain_id": CHAIN_ID,
        "sender": "alice",
        "public_key": public_key,
        "nonce": 0,
        "contract": "asset",
        "contract_version": 1,
        "method": "transfer",
        "args": {"to": "bob", "amount": 1},
        "expiry_height": 100,
    }
    fields.update(changes)
    body = TransactionBody(**fields)  # type: ignore[arg-type]
    return encode(Transaction(body, sign(SUITE, private_key, body, book.engine.domain)))


def test_admission_failures_have_stable_codes_and_change_nothing() -> None:
    book = ledger()
    cases = {
        "malformed_transaction": b"\x92\x01\x02",
        "wrong_chain": _signed(book, chain_id="other-chain"),
        "expired": _signed(book, expiry_height=0),
        "expiry_too_far": _signed(book, expiry_height=EXPIRY_BLOCKS_MAX + 2),
        "unknown_account": _signed(book, sender="carol"),
        "wrong_key": _signed(book, signer="bob"),
        "bad_nonce": _signed(book, nonce=5),
        "unknown_contract": _signed(book, contract="nothing"),
        "wrong_contract_version": _signed(book, contract_version=2),
    }
    root = book.engine.root
    receipts = book.block(*cases.values())
    assert [r.code for r in receipts] == list(cases)
    assert not any(r.ok for r in receipts)
    # Only the height advanced: no write at all, nonces included.
    assert book.engine.root == root
    assert book.engine.query("identity", "account/alice")["nonce"] == 0


def test_bad_signature_is_refused() -> None:
    book = ledger()
    tx = bytearray(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}))
    tx[-1] ^= 1
    (receipt,) = book.block(bytes(tx))
    assert receipt.code == "bad_signature"


def test_receipts_name_a_transaction_by_its_body_not_its_signature() -> None:
    """Regression (security review): the id hashed body and signature together. Setup: a
    signed transfer and the same body with another signature. Test: both receipts carry the
    same id, the body's id under the transaction-id tag; junk bytes get an id of their own."""
    book = ledger()
    good = book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}, nonce=0)
    decoded = decode(good, Transaction)
    other = encode(Transaction(decoded.body, bytes(64)))
    assert book.engine.transaction_id(good) == book.engine.transaction_id(other)
    assert book.engine.transaction_id(good) == transaction_id(SUITE, decoded.body)
    refused, accepted = book.block(other, good)
    assert (refused.code, accepted.code) == ("bad_signature", "ok")
    assert refused.tx_id == accepted.tx_id == transaction_id(SUITE, decoded.body)
    assert book.engine.transaction_id(b"junk") != book.engine.transaction_id(good)


def test_a_transaction_signed_for_another_genesis_is_refused() -> None:
    """Regression (security review): a key reused on a chain with the same chain id but
    another genesis could replay its transactions. Test: signed for another genesis hash, a
    transaction on this chain fails its signature check."""
    book = ledger()
    private_key, public_key = book.keys["alice"]
    body = TransactionBody(
        CHAIN_ID, "alice", public_key, 0, "asset", 1, "transfer", {"to": "bob", "amount": 1}, 100
    )
    rehearsal = SigningDomain(SUITE.hash(b"a rehearsal chain's genesis"))
    (receipt,) = book.block(encode(Transaction(body, sign(SUITE, private_key, body, rehearsal))))
    assert receipt.code == "bad_signature"


def test_a_failed_call_keeps_no_write_but_spends_the_nonce() -> None:
    book = ledger()
    (receipt,) = book.block(book.tx("alice", "spender", "write_then_fail"))
    assert receipt.code == "deliberate"
    assert book.engine.query("spender", "touched") is None
    assert book.engine.query("identity", "account/alice")["nonce"] == 1
    # The same signed transaction cannot run twice.
    replay = book.tx("alice", "spender", "write_then_fail", nonce=0)
    (again,) = book.block(replay)
    assert again.code == "bad_nonce"


def test_metering_stops_a_runaway_call() -> None:
    book = ledger()
    (receipt,) = book.block(book.tx("alice", "spender", "burn"))
    assert receipt.code == "out_of_gas"
    assert TX_GAS_LIMIT < receipt.gas_used <= TX_GAS_LIMIT + 10_000


def test_a_contract_bug_fails_the_transaction_not_the_block() -> None:
    book = ledger()
    receipts = book.block(
        book.tx("alice", "spender", "bug"),
        book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 5}),
    )
    assert [r.code for r in receipts] == ["contract_fault", "ok"]
    assert book.engine.query("spender", "touched") is None


def test_floats_never_reach_state() -> None:
    book = ledger()
    (receipt,) = book.block(book.tx("alice", "spender", "float"))
    assert receipt.code == "bad_value"


def test_query_at_a_past_height() -> None:
    book = ledger()
    book.block(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 100}))
    book.block(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 100}))
    assert book.engine.query("asset", "balance/CNY/bob", height=0) is None
    assert book.engine.query("asset", "balance/CNY/bob", height=1) == 100
    assert book.engine.query("asset", "balance/CNY/bob", height=2) == 200


def test_state_proofs_verify_and_detect_tampering() -> None:
    book = ledger()
    book.block(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 100}))
    answer = book.engine.prove("asset", "balance/CNY/bob")
    assert answer.height == book.engine.height and answer.root == book.engine.root
    assert answer.key == b"asset/balance/CNY/bob" and answer.value == encode(100)
    assert verify_answer(SUITE, answer)
    assert not verify_proof(SUITE, answer.root, answer.key, encode(101), answer.proof)
    assert not verify_proof(SUITE, answer.root, answer.key, None, answer.proof)


def _random_history(seed: int, blocks: int) -> list[str]:
    """Run a random history of transfers; return the state root after every block."""
    accounts = {f"acct{i}": ("bank-0", 1_000_000) for i in range(8)}
    book = make_ledger([Asset], accounts)
    rng = random.Random(seed)
    names = sorted(accounts)
    roots = []
    for _ in range(blocks):
        txs = []
        for _ in range(rng.randint(0, 12)):
            sender, target = rng.choice(names), rng.choice(names)
            amount = rng.randint(1, 400_000)
            txs.append(book.tx(sender, "asset", "transfer", {"to": target, "amount": amount}))
        book.block(*txs)
        roots.append(book.engine.root.hex())
    return roots


def test_the_same_blocks_give_the_same_roots_twice_and_in_another_process() -> None:
    here = _random_history(seed=11, blocks=60)
    assert here == _random_history(seed=11, blocks=60)
    assert len(set(here)) > 30  # the history really changed state
    code = (
        "from tests.unit.test_engine import _random_history; "
        "print(','.join(_random_history(seed=11, blocks=60)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        # The same consortia as this process imports (a worktree's, not an installed one).
        env={"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": str(SOURCE_ROOT)},
    )
    assert other.stdout.strip().split(",") == here


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(0, 5))
def test_random_and_mutated_transactions_never_raise_out_of_a_block(
    garbage: list[bytes], flip: int
) -> None:
    """Bad input is a failed receipt with a stable code and changes nothing but nonces."""
    book = ledger()
    valid = bytearray(book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}))
    valid[flip * 7 % len(valid)] ^= 0xFF
    root = book.engine.root
    receipts = book.block(*garbage, bytes(valid))
    assert len(receipts) == len(garbage) + 1
    for receipt in receipts:
        assert receipt.code == "ok" or not receipt.ok
        assert receipt.code.replace("_", "").isalpha()
    admission = {
        "malformed_transaction",
        "wrong_chain",
        "expired",
        "bad_signature",
        "unknown_account",
        "account_cancelled",
        "account_frozen",
        "wrong_key",
        "bad_nonce",
        "unknown_contract",
        "contract_frozen",
        "contract_retired",
        "wrong_contract_version",
    }
    if all(receipt.code in admission for receipt in receipts):
        assert book.engine.root == root  # refused at admission: not even a nonce moved


def test_a_signature_the_node_already_checked_is_not_checked_again() -> None:
    """The mempool's record of checked signatures lets the engine skip the check: a forged
    signature passes only when the node says it checked that exact transaction."""
    book = ledger()
    good = book.tx("alice", "asset", "transfer", {"to": "bob", "amount": 1}, nonce=0)
    tx = decode(good, Transaction)
    forged = encode(Transaction(tx.body, bytes(64)))
    result = book.engine.execute_block(1, 1000, [forged], known=lambda raw: None)
    book.engine.commit()
    assert result.receipts[0].code == "bad_signature"
    tx_id = book.engine.transaction_id(forged)
    as_known = (tx_id, decode(forged, Transaction))
    result = book.engine.execute_block(2, 2000, [forged], known=lambda raw: as_known)
    book.engine.commit()
    assert result.receipts[0].code == "ok"
