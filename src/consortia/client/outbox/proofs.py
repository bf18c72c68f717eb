"""What the relay may believe about the chain: only what the validators certified, checked
by the SDK's light client (client/light.py, client/state_reads.py) from the genesis on.

The relay records an outcome in the business database, or signs an intent again, only on the
strength of these checks (docs/outbox.md, "Trusting no node"):

* `receipt`: the transaction's receipt, proven under the receipts root of an execution
  header certified by its epoch's validators (`GET /v1/tx/{hash}?proof=true`);
* `account`: the signing account's record (its nonce, or its absence), proven under the
  state root of a certified header, with that header's height
  (`GET /v1/state/identity/account/{id}?proof=true`);
* `absence`: whether a transaction whose account's nonce the chain spent past its own ran:
  the height whose block spent the nonce, found by proven reads of the account's nonce at
  past heights, and every receipt of that block, each proven, their indexes covering the
  whole block (the receipts root binds their count);
* `refusal`: why the relay's own stored bytes deserve a refusal for good, checked here
  without any node (size, encoding, chain, signature).

Owns these three checks and the facts they yield. Must never return a fact it did not prove:
every answer that fails a check is a `VerificationError` (code `verification_failed`), every
answer that proves nothing yet is `WAITING` or None, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

from consortia.client.light import LightClient, VerificationError, decode_strict, from_hex
from consortia.client.outbox.store import Decision
from consortia.client.sdk import Client, ClientError
from consortia.client.state_reads import IDENTITY, account_key
from consortia.errors import DecodeError
from consortia.types.encoding import decode
from consortia.types.execution import ReceiptProof
from consortia.types.signing import verify
from consortia.types.transaction import Transaction

# `GET /v1/tx/{hash}?proof=true` answers while a receipt cannot be proven yet.
NOT_YET: Final = frozenset({"not_committed", "not_certified"})
WAITING: Final = "waiting"
ABSENT: Final = "absent"
# Refusals of a proven read at a past height that leave a question open (the node no longer
# keeps that height's state, or holds no certificate for it).
HEIGHT_GONE: Final = frozenset({"height_unavailable", "not_certified"})
# The most receipts of one block the absence check proves one by one.
BLOCK_RECEIPTS_MAX: Final = 5000
# A node's refusals that say it cannot answer now (worth asking again, or another node).
UNAVAILABLE: Final = frozenset({"unreachable", "bad_response", "http_error", "timeout"})
NOT_FOUND: Final = frozenset({"not_found"})


@dataclass(frozen=True, slots=True)
class ProvenReceipt:
    """A receipt proven against a certified header: `record` as `Client.transaction(verify=
    True)` builds it from the proven receipt alone, `proof` the node's proof (hex), kept so
    anyone can check the recorded outcome again."""

    record: dict[str, Any]
    proof: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.record["receipt"]["ok"])

    @property
    def final(self) -> bool:
        """An ok receipt, or a failure that spent the nonce: the transaction's outcome."""
        return bool(self.record["final"])

    def decision(self, *, nonce_spent: bool) -> Decision:
        """The outcome this receipt records: its code, height and index, and the receipt with
        its certified header and proof (anyone may check it again)."""
        record = self.record
        receipt = {**record["receipt"], "header": record["header"], "proof": self.proof}
        return Decision(
            "committed" if self.ok else "failed",
            str(record["receipt"]["code"]),
            str(record["receipt"]["message"]),
            nonce_spent,
            int(record["height"]),
            int(record["index"]),
            receipt,
        )


@dataclass(frozen=True, slots=True)
class ProvenAccount:
    """An account's next nonce (None: no such account) in the state of certified `height`."""

    height: int
    nonce: int | None


class ChainChecks:
    """The relay's checks, against validator sets kept across nodes and passes."""

    def __init__(self, light: LightClient, transaction_bytes_max: int) -> None:
        assert transaction_bytes_max > 0
        self.light = light
        self.transaction_bytes_max = transaction_bytes_max
        # The highest height a certified header showed this relay (a floor for freshness).
        self.certified_height = 0

    def attach(self, client: Client) -> Client:
        """`client`, checking its proofs with this relay's validator sets."""
        client.light = self.light
        return client

    def receipt(self, client: Client, tx_hash: str) -> ProvenReceipt | Literal["waiting"] | None:
        """The transaction's proven receipt; WAITING while the node holds it unproven
        (pending, or its block not yet certified); None when the node has no record of it
        (which proves nothing: see `account`)."""
        try:
            with _refusals_as_lies("receipt", NOT_YET | NOT_FOUND):
                answer = client.transaction_proof(tx_hash)
        except ClientError as error:
            if error.code in NOT_YET:
                return WAITING
            if error.code == "not_found":
                return None
            raise
        with _refusals_as_lies("receipt", frozenset()):  # epoch proofs its certificate needs
            record = client.check_transaction(answer, tx_hash)
        self._saw(int(record["height"]))
        proof = answer.get("proof") or {}
        kept = {name: proof.get(name) for name in ("certificate", "receipt", "receipt_proof")}
        return ProvenReceipt(record, kept)

    def account(self, client: Client, account_id: str) -> ProvenAccount | None:
        """The account's nonce proven at the node's latest certified height (absence
        included); None while the node has no certified height to prove it at."""
        try:
            with _refusals_as_lies("account", NOT_YET):
                answer = client.state_answer(IDENTITY, account_key(account_id), verify=True)
        except ClientError as error:
            if error.code in NOT_YET:
                return None
            raise
        height = int(answer["height"])
        self._saw(height)
        value = answer["value"]
        if value is None:
            return ProvenAccount(height, None)
        if not isinstance(value, dict):
            raise VerificationError("account", f"the record of {account_id!r} is no account")
        nonce = value.get("nonce", 0)
        if not isinstance(nonce, int) or nonce < 0:
            raise VerificationError("account", f"the nonce of {account_id!r} is no count")
        return ProvenAccount(height, nonce)

    def absence(
        self, client: Client, account_id: str, nonce: int, tx_hash: str, high: int
    ) -> ProvenReceipt | Literal["absent"] | None:
        """Whether the transaction `tx_hash` (of `account_id`, with `nonce`) ran, given that
        the account's nonce proven at certified height `high` is past `nonce`: the
        transaction's receipt, proven, from the block that spent the nonce if it ran there;
        ABSENT when every receipt of that block is proven and it is not among them (or only
        failed there before spending a nonce), so another transaction spent the nonce and
        this one can never run; None when the node cannot prove either (its history is gone,
        it withholds a proof, the block is too large)."""
        height = self._spent_at(client, account_id, nonce, high)
        if height is None:
            return None
        receipts = self._block(client, height)
        if receipts is None:
            return None
        found = receipts.get(tx_hash)
        if found is not None and found.final:
            return found
        return ABSENT

    def _nonce_at(self, client: Client, account_id: str, height: int) -> int | None:
        """The account's nonce proven at `height` (0 before the account exists; at height 0,
        the genesis: every account starts at 0); None when the node cannot prove it."""
        if height == 0:
            return 0
        try:
            with _refusals_as_lies("account", NOT_YET | HEIGHT_GONE):
                answer = client.state_answer(IDENTITY, account_key(account_id), height, verify=True)
        except ClientError as error:
            if error.code in NOT_YET | HEIGHT_GONE:
                return None
            raise
        if int(answer["height"]) != height:
            raise VerificationError("account", f"proven at {answer['height']}, not {height}")
        value = answer["value"]
        nonce = 0 if value is None else value.get("nonce", 0) if isinstance(value, dict) else -1
        if not isinstance(nonce, int) or nonce < 0:
            raise VerificationError("account", f"the record of {account_id!r} is no account")
        return nonce

    def _spent_at(self, client: Client, account_id: str, nonce: int, high: int) -> int | None:
        """The height h whose block took the account's nonce past `nonce` (proven: at most
        `nonce` at h - 1, more at h), searched down from `high` (where it is more) by
        doubling steps, then halving; None when a height's state cannot be proven."""
        above, step = high, 1
        while True:
            probe = max(0, above - step)
            found = self._nonce_at(client, account_id, probe)
            if found is None:
                return None
            if found <= nonce:
                below = probe
                break
            above, step = probe, step * 2
        while above - below > 1:
            middle = (above + below) // 2
            found = self._nonce_at(client, account_id, middle)
            if found is None:
                return None
            if found <= nonce:
                below = middle
            else:
                above = middle
        return above

    def _block(self, client: Client, height: int) -> dict[str, ProvenReceipt] | None:
        """Every receipt of block `height`, each proven, by hash; None unless their indexes
        cover the block (a receipt withheld, or proven at another height, leaves a hole)."""
        try:
            with _refusals_as_lies("receipts", HEIGHT_GONE):
                listed = client.block_receipts(height).get("receipts")
        except ClientError as error:
            if error.code in HEIGHT_GONE:
                return None
            raise
        if not isinstance(listed, list) or len(listed) > BLOCK_RECEIPTS_MAX:
            return None
        proven: dict[str, ProvenReceipt] = {}
        indexes: set[int] = set()
        counts: set[tuple[int, str]] = set()
        for entry in listed:
            tx_hash = entry.get("tx_hash") if isinstance(entry, dict) else None
            if not isinstance(tx_hash, str) or tx_hash in proven:
                return None
            found = self.receipt(client, tx_hash)
            if not isinstance(found, ProvenReceipt) or found.record["height"] != height:
                return None
            receipt_proof: ReceiptProof = decode_strict(
                from_hex(found.proof.get("receipt_proof"), "receipt_proof"),
                ReceiptProof,
                "receipt_proof",
            )
            proven[tx_hash] = found
            indexes.add(int(found.record["index"]))
            counts.add((receipt_proof.count, str(found.record["header"]["receipts_root"])))
        if len(counts) > 1:
            raise VerificationError("receipts", f"block {height}'s receipts disagree on its root")
        if not counts:
            return None  # the block spent a nonce: it holds a receipt, which the node withholds
        ((count, _root),) = counts
        if indexes != set(range(count)):
            return None
        return proven

    def refusal(self, raw: bytes) -> tuple[str, str] | None:
        """(code, message) of the refusal for good the stored bytes deserve, as every honest
        node would give it; None for bytes well formed, for this chain and signed by the key
        they name (then a node refusing them for good is lying)."""
        if len(raw) > self.transaction_bytes_max:
            return "too_large", f"over {self.transaction_bytes_max} bytes"
        try:
            tx = decode(raw, Transaction)
        except DecodeError as error:
            return "malformed_transaction", error.message
        body = tx.body
        if body.chain_id != self.light.chain_id:
            return "wrong_chain", f"transaction is for chain {body.chain_id!r}"
        light = self.light
        if not verify(light.suite, body.public_key, body, tx.signature, light.domain):
            return "bad_signature", "the signature does not verify"
        return None

    def _saw(self, height: int) -> None:
        self.certified_height = max(self.certified_height, height)


@contextmanager
def _refusals_as_lies(what: str, allowed: frozenset[str]) -> Iterator[None]:
    """A node's refusal while answering what it must be able to prove (an epoch proof its
    certificate calls for, a block it holds, a 4xx the API never gives there) as a
    VerificationError, so a node cannot stop the relay by refusing; the node away, and the
    refusals `allowed` at that point, pass as they are."""
    try:
        yield
    except ClientError as error:
        if error.code in UNAVAILABLE | allowed or error.status >= 500:
            raise
        raise VerificationError(what, f"the node refused to prove its answer: {error}") from None
