"""Execution results pinned: a few hundred mixed transactions, on both crypto suites, give
exactly the receipts, state writes and state roots recorded here.

The digests were produced by the engine before its hot path was optimised; any change to a
receipt (code, message, events, gas used, result), to a block's writes or to a state root
changes them. Results are consensus data, so a changed digest is a fork, not a refactoring:
update a digest only with a protocol version change, never to make this test pass.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

import pytest

from consortia.errors import DecodeError
from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.engine import Engine
from consortia.execution.genesis import genesis_writes
from consortia.execution.registry import ContractRegistry
from consortia.types.encoding import decode, encode
from consortia.types.genesis import genesis_hash
from consortia.types.signing import transaction_id
from consortia.types.transaction import Transaction, TransactionBody
from tests.execution_helpers import CHAIN_ID, Ledger, key_for, make_ledger

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
ACCOUNTS: dict[str, tuple[str, int]] = {
    "treasury": ("bank-0", 10**12),
    "alice": ("bank-1", 50_000),
    "bob": ("bank-2", 1_000),
    "carol": ("bank-3", 0),
    "dave": ("bank-1", 7),
    "erin": ("bank-2", 123_456),
    "frank": ("bank-3", 10**9),
    "officer": ("regulator", 0),
}
BLOCKS = 12
TXS_PER_BLOCK = 30

# sha256 over every block's receipts, sorted writes and root, as main produced them.
PINNED = {
    ("intl", False): "20e806b1c376b8021e7db68b943b2ef532e1f56d26c53bb6deecf95ba20f05c7",
    ("gm", False): "a9b47c0da2ba5e997bb2ba312d88bb6eaba6e78941cdce61b5c72008e22d2348",
    ("intl", True): "b72706eb4ec905276586575a4ab31b3cddd9fb4fac95d58dd199f2791f8e5bf4",
}


def _chain(suite_name: str, regulator_frozen: bool) -> Ledger:
    chain = make_ledger(BUILTIN_CONTRACTS, ACCOUNTS, suite_name=suite_name)
    chain.keys["ghost"] = key_for("ghost", chain.suite)  # signs, but has no account
    if regulator_frozen:
        # The regulator's deployment is frozen until height 4: transfers skip it, then not.
        writes = genesis_writes(chain.genesis, BUILTIN_CONTRACTS)
        writes["sys"]["contract/regulator"].update(status="frozen", frozen_until=4)
        engine = Engine(
            chain.suite,
            chain.genesis.chain_id,
            ContractRegistry(BUILTIN_CONTRACTS),
            genesis_hash=genesis_hash(chain.genesis),
        )
        engine.initialise(writes)
        chain = Ledger(engine, chain.genesis, chain.keys, suite=chain.suite)
    return chain


def _nonce(chain: Ledger, sender: str) -> int:
    """The sender's next nonce as the ledger tracks it, without spending it."""
    return chain.nonces.get(sender, 0)


def _malformed(chain: Ledger, sender: str, args: dict[str, Any]) -> bytes:
    """A transfer whose arguments no transaction may carry: bytes that do not decode. Its
    receipt is named by the bytes' hash, so it carries a fixed signature (gm's are random)."""
    public_key = chain.keys[sender][1]
    body = TransactionBody(
        CHAIN_ID, sender, public_key, _nonce(chain, sender), "asset", 1, "transfer", args, 10_000
    )
    return encode(Transaction(body, bytes(chain.suite.signature_size)))


def _transaction(chain: Ledger, rng: random.Random, height: int) -> bytes:
    sender = rng.choice(PEOPLE)
    to = rng.choice([*PEOPLE, "treasury"])
    kind = rng.randrange(24)
    transfer = "transfer"
    if kind < 8:  # a plain transfer, often succeeding
        return chain.tx(sender, "asset", transfer, {"to": to, "amount": rng.randrange(1, 3000)})
    if kind == 8:
        return chain.tx(sender, "asset", transfer, {"to": to, "amount": 10**10})  # funds
    if kind == 9:
        return chain.tx(sender, "asset", transfer, {"to": "nobody", "amount": 1})
    if kind == 10:
        bad: Any = rng.choice([0, -5, "12", None, 1.5, True, 2**62 + 1, [1]])
        if bad is None or isinstance(bad, float):
            return _malformed(chain, sender, {"to": to, "amount": bad})
        return chain.tx(sender, "asset", transfer, {"to": to, "amount": bad})
    if kind == 11:
        args = rng.choice(
            [
                {"amount": 1},
                {"to": "x" * 65, "amount": 1},
                {"to": 7, "amount": 1},
                {"to": to, "amount": 1, "currency": "cny"},
                {"to": to, "amount": 1, "currency": "EUR"},
                {"to": to, "amount": 1, "currency": "CNY", "memo": "extra"},
            ]
        )
        return chain.tx(sender, "asset", transfer, args)
    if kind == 12:
        return chain.tx(sender, "asset", "no_such_method", {"to": to})
    if kind == 13:  # admission refusals: the nonce is not spent
        nonce = _nonce(chain, sender)
        return rng.choice(
            [
                chain.tx(sender, "asset", transfer, {"to": to, "amount": 1}, nonce=nonce + 3),
                chain.tx(
                    sender, "asset", transfer, {"to": to, "amount": 1}, nonce=nonce, version=2
                ),
                chain.tx(sender, "nope", transfer, {"to": to, "amount": 1}, nonce=nonce),
                chain.tx(sender, "asset", transfer, {}, nonce=nonce, expiry=height - 1),
                chain.tx("ghost", "asset", transfer, {"to": to, "amount": 1}, nonce=0),
            ]
        )
    if kind == 14:
        return chain.tx("treasury", "asset", "issue", {"amount": rng.randrange(1, 10**6)})
    if kind == 15:
        return chain.tx("treasury", "asset", "redeem", {"amount": rng.randrange(1, 10**6)})
    if kind == 16:
        return chain.tx(sender, "asset", "issue", {"amount": 5})  # not the issuer
    if kind == 17:
        return chain.tx(sender, "asset", transfer, {"to": sender, "amount": 1})
    if kind == 18:
        return chain.tx(
            "treasury", "asset", transfer, {"to": to, "amount": rng.randrange(1, 10**7)}
        )
    if kind == 19:
        rules: dict[str, Any] = {"listed": rng.sample(PEOPLE, rng.randrange(3))}
        if rng.randrange(3):
            rules["single_transfer_max"] = rng.choice([500, 2000])
        if rng.randrange(2):
            rules.update(velocity_count=2, velocity_window_blocks=3)
        return chain.tx("officer", "regulator", "set_rules", rules)
    if kind == 20:
        freeze = {"account": rng.choice(PEOPLE), "blocks": rng.randrange(1, 3)}
        return chain.tx("officer", "regulator", "emergency_freeze", freeze)
    if kind == 21:
        return chain.tx("officer", "regulator", "supervise_account", {"account": sender})
    if kind == 22:
        observed = {"source": sender, "target": to, "currency": "CNY", "amount": 1}
        return chain.tx(sender, "regulator", "observe_transfer", observed)
    return chain.tx(sender, "smallbank", "balance", {"customer": sender})


def _run(suite_name: str, regulator_frozen: bool) -> tuple[str, Counter[str]]:
    """The digest of a pinned load's results, and how many receipts carry each code."""
    chain = _chain(suite_name, regulator_frozen)
    rng = random.Random(f"{suite_name}/{regulator_frozen}")
    engine = chain.engine
    digest = hashlib.sha256(engine.root)
    codes: Counter[str] = Counter()
    for height in range(1, BLOCKS + 1):
        txs = [_transaction(chain, rng, height) for _ in range(TXS_PER_BLOCK)]
        txs.append(b"\x93not a transaction")
        for raw in txs[:3]:
            digest.update(encode(engine.check(raw).canonical(0, 0)))
        # Every other block as a node hands it over, its signatures already checked.
        known: dict[bytes, tuple[bytes, Transaction]] = {}
        if height % 2:
            for raw in txs:
                try:
                    tx = decode(raw, Transaction)
                except DecodeError:
                    continue  # args no transaction carries (None, floats): malformed
                known[raw] = (transaction_id(engine.suite, tx.body), tx)
        result = engine.execute_block(height, height * 1000, txs, known=known.get)
        root = engine.commit()
        for index, receipt in enumerate(result.receipts):
            digest.update(encode(receipt.canonical(height, index)))
            codes[receipt.code] += 1
        digest.update(encode(sorted(engine.last_writes.items())))
        digest.update(root)
        for account in chain.keys:  # the ledger's nonces follow what the chain spent
            record = engine.query("identity", f"account/{account}")
            if record is not None:
                chain.nonces[account] = record["nonce"]
    return digest.hexdigest(), codes


@pytest.mark.parametrize(("suite_name", "regulator_frozen"), list(PINNED))
def test_mixed_transactions_give_the_pinned_results(
    suite_name: str, regulator_frozen: bool
) -> None:
    assert _run(suite_name, regulator_frozen)[0] == PINNED[(suite_name, regulator_frozen)]


def test_the_pinned_loads_hold_successes_and_each_kind_of_failure() -> None:
    """The pinned loads are worth pinning: successes and every failure they aim at."""
    codes: Counter[str] = Counter()
    for suite_name, regulator_frozen in PINNED:
        load = _run(suite_name, regulator_frozen)[1]
        assert load["ok"] >= 100, load
        codes.update(load)
    wanted = {
        "ok",
        "insufficient_funds",
        "unknown_account",
        "bad_argument",
        "unknown_method",
        "bad_nonce",
        "not_issuer",
        "not_authorised",
        "account_frozen",
        "contract_frozen",
        "malformed_transaction",
        "wrong_contract_version",
        "unknown_contract",
        "expired",
    }
    assert wanted <= set(codes), codes
