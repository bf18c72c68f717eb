"""The relay against a lying node: no answer it cannot prove makes the business database
record an outcome, or the relay sign an intent again.

Setup: a schema per test (a business system's database, real PostgreSQL) and `ChainNode`
(tests/outbox_helpers.py), whose blocks the test validators certify, served to the real SDK
and light client; a lying node is the same chain behind an `edit` that rewrites answers.

Test: a fake receipt (a receipt edited, its code changed, another transaction's receipt, a
transaction "committed" in a block no quorum certified, a whole chain certified by keys that
are not the validators') is refused with `verification_failed` and nothing is recorded; the
relay stops after a bounded number of such passes, or moves to an honest node and records the
truth; a receipt hidden (absence claimed of a committed transaction), a stale failed receipt
of a transaction that later committed, an expiry claimed early, a refusal for good of good
bytes, and an account said not to exist, each leave the intent undecided and never signed
again; with the receipt check weakened, the same fake receipt is recorded (the attack is
real, the check is what stops it).

Run alone: .venv/bin/pytest tests/unit/test_outbox_trust.py
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import psycopg
import pytest

from consortia.client import Client, LightClient, Signer, VerificationError
from consortia.client.outbox import (
    AbsenceUnprovenError,
    Intent,
    OutboxStore,
    Relay,
    RelaySettings,
    RelayVerificationError,
    enqueue,
    migrate,
)
from consortia.crypto import suite
from consortia.types.encoding import decode, encode
from consortia.types.execution import TxReceipt
from tests.outbox_helpers import ALICE, CHAIN, Answer, ChainNode, Edit, checks
from tests.pg_helpers import PgServer, pg_server

__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture


@pytest.fixture
def dsn(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    name = "obt_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:55]
    dsn = pg_server.schema(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
    return dsn


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query).fetchall()


def _enqueue(dsn: str, *amounts: int) -> None:
    with psycopg.connect(dsn) as connection:
        for amount in amounts:
            enqueue(
                connection,
                Intent(
                    f"pay-{amount}", ALICE, "asset", "transfer", {"to": "bob", "amount": amount}
                ),
            )


def _relay(
    dsn: str, node: ChainNode, *edits: Edit | None, until_idle: bool = False, **settings: Any
) -> Relay:
    """A relay over one node per edit (None: an honest one)."""
    private_key, _public = suite("intl").generate_keypair()
    signer = Signer(ALICE, private_key, CHAIN)
    urls = [f"http://node-{i}" for i in range(len(edits) or 1)]
    by_url = dict(zip(urls, edits or (None,), strict=True))
    return Relay(
        lambda: OutboxStore.connect(dsn),
        urls,
        lambda _account, _client: signer,
        checks=checks(),
        settings=RelaySettings(
            expiry_blocks=5, until_idle=until_idle, backoff_max_s=0.01, **settings
        ),
        client_for=lambda url: Client(url, transport=node.transport(by_url[url])),
    )


def _intents(dsn: str) -> list[tuple[Any, ...]]:
    return _rows(
        dsn,
        "SELECT business_key, state, code, signings, height, last_error FROM outbox_intents"
        " ORDER BY id",
    )


def _on_tx(rewrite: Any) -> Edit:
    """An edit of the answers to GET /v1/tx/{hash} (the hash passed along)."""

    def edit(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path.startswith("/v1/tx/"):
            return rewrite(path.rsplit("/", 1)[1], status, answer)
        return status, answer

    return edit


def _receipt_edit(change: Any) -> Edit:
    """Rewrite the proven receipt inside the proof (its proof left as it was)."""

    def rewrite(_tx_hash: str, status: int, answer: dict[str, Any]) -> Answer:
        if status != 200:
            return status, answer
        proof = dict(answer["proof"])
        receipt = decode(bytes.fromhex(proof["receipt"]), TxReceipt)
        proof["receipt"] = encode(msgspec.structs.replace(receipt, **change)).hex()
        return 200, {**answer, "proof": proof}

    return _on_tx(rewrite)


def _stale_nonce(path: str, status: int, answer: dict[str, Any]) -> Answer:
    """Every submitted transaction said to be in a block already (so the relay looks it up)."""
    if path == "/v1/txs":
        results = [{"error": {"code": "stale_nonce", "message": "lie"}} for _ in answer["results"]]
        return status, {"results": results}
    return status, answer


def _chain(*edits: Edit) -> Edit:
    def edit(path: str, status: int, answer: dict[str, Any]) -> Answer:
        for each in edits:
            status, answer = each(path, status, answer)
        return status, answer

    return edit


def _hidden(_tx_hash: str, _status: int, _answer: dict[str, Any]) -> Answer:
    return 404, {"error": {"code": "not_found", "message": "no such transaction"}}


def _committed(node: ChainNode, dsn: str, relay: Relay) -> str:
    """Sign and send one intent and commit it in block 11; its hash."""
    _enqueue(dsn, 5)
    relay.run_once()
    node.block()
    ((tx_hash,),) = _rows(dsn, "SELECT tx_hash FROM outbox_intents")
    return str(tx_hash)


# ---------------------------------------------------------------------- fake receipts


@pytest.mark.parametrize(
    "lie",
    [
        "receipt edited: failed as ok",
        "receipt edited: ok as failed",
        "another transaction's receipt",
        "committed in a block no quorum certified",
        "every certificate forged",
    ],
)
def test_a_fake_receipt_is_refused_and_nothing_recorded(dsn: str, lie: str) -> None:
    node = ChainNode(outcome={5: "insufficient_funds", 6: "ok"})
    _enqueue(dsn, 5, 6)
    honest = _relay(dsn, node)
    honest.run_once()
    hashes = dict(_rows(dsn, "SELECT business_key, tx_hash FROM outbox_intents"))
    node.block()
    if lie == "every certificate forged":
        node.forge = True
        for height in list(node.certificates):
            node.certify(height, node.certificates[height].header.receipts_root)
    edit = _lie(lie, node, hashes)
    relay = _relay(dsn, node, _chain(_stale_nonce, edit))
    with pytest.raises(VerificationError) as refused:
        relay.run_once()
    assert refused.value.code == "verification_failed"
    assert [row[1] for row in _intents(dsn)] == ["signed", "signed"]  # nothing recorded
    assert _rows(dsn, "SELECT DISTINCT fate FROM outbox_transactions") == [("live",)]


def _lie(lie: str, node: ChainNode, hashes: dict[str, str]) -> Edit:
    def swapped(tx_hash: str, _status: int, _answer: dict[str, Any]) -> Answer:
        other = hashes["pay-6"] if tx_hash == hashes["pay-5"] else hashes["pay-5"]
        return node._transaction(other)

    def forged(tx_hash: str, _status: int, _answer: dict[str, Any]) -> Answer:
        return 200, node.forged_receipt(tx_hash, "ok")

    return {
        "receipt edited: failed as ok": _receipt_edit({"ok": True, "code": "ok"}),
        "receipt edited: ok as failed": _receipt_edit({"ok": False, "code": "contract_fault"}),
        "another transaction's receipt": _on_tx(swapped),
        "committed in a block no quorum certified": _on_tx(forged),
        "every certificate forged": _on_tx(lambda _h, status, answer: (status, answer)),
    }[lie]


def test_a_relay_fed_lies_stops_after_a_bounded_number_of_passes(dsn: str) -> None:
    node = ChainNode()
    _committed(node, dsn, _relay(dsn, node))
    liar = _chain(_stale_nonce, _receipt_edit({"code": "insufficient_funds", "ok": False}))
    relay = _relay(dsn, node, liar, liar, until_idle=True, verification_failures_max=3)
    with pytest.raises(RelayVerificationError) as stopped:
        relay.run()
    assert stopped.value.code == "verification_failed"
    assert relay.counters.verification_failures == 3
    assert [row[1] for row in _intents(dsn)] == ["signed"]


def test_a_relay_moves_past_a_lying_node_and_records_the_truth(dsn: str) -> None:
    node = ChainNode()
    tx_hash = _committed(node, dsn, _relay(dsn, node))
    liar = _chain(_stale_nonce, _receipt_edit({"code": "insufficient_funds", "ok": False}))
    relay = _relay(dsn, node, liar, None, until_idle=True)
    relay.run()
    assert _intents(dsn) == [("pay-5", "committed", "ok", 1, 11, None)]
    assert relay.counters.verification_failures == 1
    # The recorded receipt carries its certified header and proof, checkable by anyone.
    ((receipt,),) = _rows(dsn, "SELECT receipt FROM outbox_intents")
    answer = {"proof": {**receipt["proof"], "header": receipt["header"]}}
    proven, header = LightClient(node.genesis).verify_receipt(answer, tx_hash)
    assert (proven.ok, header.height) == (True, 11)


def test_with_the_receipt_check_weakened_the_fake_receipt_is_recorded(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack of the tests above is real: without the certificate check, a receipt in a
    block no quorum certified is recorded as the intent's outcome."""
    node = ChainNode()
    _enqueue(dsn, 5)
    _relay(dsn, node).run_once()
    weakened: list[int | None] = []

    def unchecked(self: LightClient, certificate: Any, height: int | None = None) -> Any:
        weakened.append(height)
        return certificate.header

    monkeypatch.setattr(LightClient, "verify_certificate", unchecked)
    forged = _on_tx(lambda tx_hash, _s, _a: (200, node.forged_receipt(tx_hash, "ok")))
    _relay(dsn, node, _chain(_stale_nonce, forged)).run_once()
    assert [row[1:3] for row in _intents(dsn)] == [("committed", "ok")]  # never committed
    assert weakened  # the outcome came through the weakened check


# ---------------------------------------------------------------------- absence and lies


def test_a_hidden_receipt_never_fails_the_intent_nor_signs_it_again(dsn: str) -> None:
    node = ChainNode()
    _committed(node, dsn, _relay(dsn, node))
    node.block(5)  # past the expiry height
    liar = _chain(_stale_nonce, _on_tx(_hidden))
    relay = _relay(dsn, node, liar, signings_max=1)
    for _ in range(4):
        relay.run_once()
    assert _intents(dsn) == [("pay-5", "signed", None, 1, None, "absence_unproven")]
    assert _rows(dsn, "SELECT count(*) FROM outbox_transactions") == [(1,)]
    assert relay.counters.unproven == 1  # asked again only after a pause
    with pytest.raises(AbsenceUnprovenError):  # a batch run stops rather than wait for ever
        _relay(dsn, node, liar, until_idle=True).run()
    # The next pass's node, honest, shows the receipt: recorded.
    relay = _relay(dsn, node, liar, None, until_idle=True)
    relay.run()
    assert _intents(dsn)[0][1:5] == ("committed", "ok", 1, 11)


def test_an_old_failed_receipt_of_a_transaction_that_later_committed_is_not_recorded(
    dsn: str,
) -> None:
    """A faulty leader put the transaction in block 11, where it failed before spending the
    nonce; it committed in block 12. A node serving the (genuine) block-11 receipt cannot
    make the intent recorded failed."""
    node = ChainNode(outcome={5: "unknown_account"})
    _enqueue(dsn, 5)
    relay = _relay(dsn, node)
    relay.run_once()
    ((tx_hash,),) = _rows(dsn, "SELECT tx_hash FROM outbox_intents")
    node.block()  # fails without spending the nonce: receipt at 11
    stale = node._transaction(tx_hash)
    node.outcome.clear()
    relay.run_once()  # sent again, admitted
    node.block()  # committed ok at 12
    node.block(5)  # past the expiry height
    liar = _chain(_stale_nonce, _on_tx(lambda _h, _s, _a: stale))
    lied_to = _relay(dsn, node, liar)
    lied_to.run_once()
    assert _intents(dsn)[0][1] == "signed"
    assert lied_to.counters.unproven == 1
    _relay(dsn, node).run_once()
    assert _intents(dsn)[0][1:5] == ("committed", "ok", 1, 12)


def test_an_expiry_claimed_early_waits_for_a_certified_height(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, 5)
    relay = _relay(dsn, node)
    relay.run_once()
    node.mempool.clear()  # never committed; the chain is at 10, the expiry height 15
    node.refuse["all"] = "expired"  # a lie: 15 is not reached
    lied_to = _relay(dsn, node)
    lied_to.run_once()
    lied_to.run_once()
    assert _intents(dsn)[0][1:4] == ("signed", None, 1)
    node.block(5)
    lied_to.run_once()  # now proven: never executed, signed again
    assert _intents(dsn)[0][1:4] == ("pending", None, 1)


def test_a_refusal_for_good_of_good_bytes_is_a_lie(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, 5)
    for code in ("bad_signature", "wrong_chain", "malformed_transaction", "too_large"):
        node.refuse["all"] = code
        with pytest.raises(VerificationError, match=f"as {code}"):
            _relay(dsn, node).run_once()
    assert _intents(dsn)[0][1:3] == ("signed", None)


def test_an_account_said_not_to_exist_is_not_failed(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, 5)

    def no_alice(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path == "/v1/nonces":
            return status, {"nonces": dict.fromkeys(answer["nonces"])}
        return status, answer

    with pytest.raises(VerificationError, match="a proof says there is"):
        _relay(dsn, node, no_alice).run_once()
    assert _intents(dsn)[0][1:3] == ("pending", None)


# ---------------------------------------------------------------------- the block that spent it


def _stolen(dsn: str) -> tuple[ChainNode, str]:
    """x (nonce 0) and y (nonce 1) signed; another signer's transaction takes nonce 0 in
    block 11, where y runs too; x's hash."""
    node = ChainNode()
    _enqueue(dsn, 5, 6)
    _relay(dsn, node).run_once()
    (x_hash,) = [h for h, t in node.mempool.items() if t.body.nonce == 0]
    del node.mempool[x_hash]
    node.spend(ALICE, 1)
    return node, x_hash


def _listing(keep: Any) -> Edit:
    """The receipts of block 11 as a lying node lists them: those `keep` keeps."""

    def edit(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path == "/v1/blocks/11/receipts":
            return status, {**answer, "receipts": [r for r in answer["receipts"] if keep(r)]}
        return status, answer

    return edit


@pytest.mark.parametrize("kept", ["ours only", "none"])
def test_a_block_listed_incompletely_proves_no_absence(dsn: str, kept: str) -> None:
    node, _x_hash = _stolen(dsn)
    y_hash = node.in_block[11][1].tx_id.hex()
    keep = (lambda r: r["tx_hash"] == y_hash) if kept == "ours only" else (lambda _r: False)
    relay = _relay(dsn, node, _listing(keep))
    relay.run_once()
    assert [row[1:4] for row in _intents(dsn)] == [("signed", None, 1), ("committed", "ok", 1)]
    assert relay.counters.unproven == 1
    _relay(dsn, node).run_once()  # an honest node proves the whole block: x signed again
    assert _intents(dsn)[0][1] == "pending"


def test_a_block_said_to_hold_our_transaction_without_its_proof_proves_nothing(
    dsn: str,
) -> None:
    node, x_hash = _stolen(dsn)

    def claim(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path == "/v1/blocks/11/receipts":
            fake = {"tx_hash": x_hash, "ok": True, "code": "ok"}
            return status, {**answer, "receipts": [*answer["receipts"], fake]}
        return status, answer

    relay = _relay(dsn, node, claim)
    relay.run_once()
    assert _intents(dsn)[0][1:3] == ("signed", None)
    assert relay.counters.unproven == 1


def test_history_a_node_says_it_no_longer_keeps_proves_nothing(dsn: str) -> None:
    node, _x_hash = _stolen(dsn)

    def forgot(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path.startswith("/v1/state/") and status == 200 and answer["height"] < node.height:
            return 409, {"error": {"code": "height_unavailable", "message": "pruned"}}
        return status, answer

    relay = _relay(dsn, node, forgot)
    relay.run_once()
    assert _intents(dsn)[0][1:3] == ("signed", None)
    assert relay.counters.unproven == 1


def test_a_receipt_hidden_from_the_lookup_is_found_in_the_block_that_spent_the_nonce(
    dsn: str,
) -> None:
    node = ChainNode()
    tx_hash = _committed(node, dsn, _relay(dsn, node))
    hidden_once: list[str] = []

    def hide_first(tx: str, status: int, answer: dict[str, Any]) -> Answer:
        if tx == tx_hash and not hidden_once:
            hidden_once.append(tx)
            return _hidden(tx, status, answer)
        return status, answer

    _relay(dsn, node, _chain(_stale_nonce, _on_tx(hide_first))).run_once()
    assert hidden_once == [tx_hash]
    assert _intents(dsn) == [("pay-5", "committed", "ok", 1, 11, None)]


def _epoch(claimed: int) -> Edit:
    """Proven answers whose header claims a later epoch (whose validators no proof names)."""

    def edit(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if status == 200 and isinstance(answer.get("proof"), dict):
            proof = {**answer["proof"], "header": {**answer["proof"]["header"], "epoch": claimed}}
            return status, {**answer, "proof": proof}
        return status, answer

    return edit


def test_a_node_refusing_to_prove_its_own_answer_is_lying_not_stopping_the_relay(
    dsn: str,
) -> None:
    node = ChainNode()
    _committed(node, dsn, _relay(dsn, node))
    relay = _relay(dsn, node, _chain(_stale_nonce, _epoch(7)))
    with pytest.raises(VerificationError, match="refused to prove"):
        relay.run_once()

    def teapot(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path.startswith("/v1/tx/"):
            return 418, {"error": {"code": "teapot", "message": "no"}}
        return status, answer

    with pytest.raises(VerificationError, match="refused to prove"):
        _relay(dsn, node, _chain(_stale_nonce, teapot)).run_once()
    assert _intents(dsn)[0][1] == "signed"


def test_nothing_certified_yet_means_wait(dsn: str) -> None:
    node = ChainNode()
    _enqueue(dsn, 5)
    _relay(dsn, node).run_once()
    node.mempool.clear()
    node.block(5)

    def uncertified(path: str, status: int, answer: dict[str, Any]) -> Answer:
        if path.startswith("/v1/state/"):
            return 409, {"error": {"code": "not_certified", "message": "not yet"}}
        return status, answer

    relay = _relay(dsn, node, uncertified)
    relay.run_once()
    assert _intents(dsn)[0][1] == "signed"
    relay = _relay(dsn, node)
    relay.run_once()
    assert _intents(dsn)[0][1] == "pending"  # proven never executed once certified
