"""A fake node for the relay's tests that certifies what it says, as the validators would.

`ChainNode` keeps the chain the relay cares about (accounts' nonces, a mempool with the
admission answers of docs/node.md, blocks made on demand with receipts chosen per amount)
and serves it over an httpx transport under the API's paths, so the relay runs the real SDK
and light client against it. Every block is certified by the test validators' keys
(node_helpers.validator_keys, the genesis of node_helpers.make_genesis): receipts are proven
under the block's receipts root, accounts under a Jellyfish state root.

Because the test holds the validators' keys it can lie in every way a node could (answer
anything through `edit`, drop receipts, refuse what it likes) and also in ways no real node
can (`forge`: certificates signed by keys that are not the validators').
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from consortia.client import ChainInfo, LightClient
from consortia.client.outbox import ChainChecks
from consortia.crypto import suite as get_suite
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore
from consortia.node.proven_reads import proof_object
from consortia.types.encoding import decode, encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
    TxReceipt,
    header_view,
    receipt_leaf,
    receipt_proof,
    receipts_root,
)
from consortia.types.genesis import Genesis, genesis_hash
from consortia.types.signing import SigningDomain, sign, transaction_id
from consortia.types.state_proof import StateAnswer, state_key
from consortia.types.transaction import Transaction
from tests.node_helpers import make_genesis, validator_keys

SUITE = get_suite("intl")
GENESIS = make_genesis(4)
CHAIN = ChainInfo(GENESIS.chain_id, GENESIS.suite, genesis_hash(GENESIS))
ALICE = "alice"
NONCE_FREE = ("unknown_account", "expired")  # receipt codes the fake gives without a nonce
Answer = tuple[int, dict[str, Any]]
Edit = Callable[[str, int, dict[str, Any]], Answer]  # (path, status, answer) -> what is said


def _forged_keys() -> list[tuple[bytes, bytes, bytes]]:
    keys = []
    for index in range(4):
        private = SUITE.hash(f"outbox-test/forger-{index}".encode())
        public = SUITE.public_key(private)
        keys.append((SUITE.hash(public), public, private))
    return sorted(keys)


@dataclass
class ChainNode:
    genesis: Genesis = GENESIS
    height: int = 10
    nonces: dict[str, int] = field(default_factory=lambda: {ALICE: 0})
    mempool: dict[str, Transaction] = field(default_factory=dict)
    receipts: dict[str, TxReceipt] = field(default_factory=dict)  # tx hash -> its receipt
    refuse: dict[str, str] = field(default_factory=dict)  # "all" or a tx hash -> code
    outcome: dict[int, str] = field(default_factory=dict)  # amount -> receipt code
    submitted: list[str] = field(default_factory=list)
    # (path, status, answer) -> (status, answer): what a lying node says instead.
    edit: Edit | None = None
    forge: bool = False  # certify with keys that are not the validators'
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.domain = SigningDomain(genesis_hash(self.genesis))
        self.store = MemoryNodeStore()
        self.tree = JellyfishTree(SUITE, self.store.read)
        self.certificates: dict[int, ExecutionCertificate] = {}
        self.leaves: dict[int, list[bytes]] = {}
        self.in_block: dict[int, list[TxReceipt]] = {}
        self.foreign: list[TxReceipt] = []  # other signers' receipts for the next block
        start, self.height = self.height, 0
        for height in range(1, start + 1):  # empty blocks up to the starting height
            self.height = height
            self._commit_state(self.nonces, [])

    # ------------------------------------------------------------------ the chain

    def block(self, count: int = 1) -> None:
        """Commit every runnable transaction (consecutive nonces) at the next height."""
        for _ in range(count):
            self._block()

    def _block(self) -> None:
        self.height += 1
        made = [msgspec.structs.replace(r, height=self.height) for r in self.foreign]
        self.foreign = []
        progressed = True
        while progressed:
            progressed = False
            for tx_hash, tx in sorted(self.mempool.items(), key=lambda item: item[1].body.nonce):
                body = tx.body
                if body.nonce != self.nonces[body.sender] or body.expiry_height < self.height:
                    continue
                code = self.outcome.get(int(body.args["amount"]), "ok")  # type: ignore[arg-type]
                made.append(self.receipt_of(tx_hash, len(made), code))
                del self.mempool[tx_hash]
                if code not in NONCE_FREE:
                    self.nonces[body.sender] += 1
                progressed = True
                break
        self.mempool = {h: t for h, t in self.mempool.items() if t.body.expiry_height > self.height}
        for receipt in made:
            self.receipts[receipt.tx_id.hex()] = receipt
        self._commit_state(self.nonces, made)

    def receipt_of(self, tx_hash: str, index: int, code: str) -> TxReceipt:
        return TxReceipt(
            bytes.fromhex(tx_hash), self.height, index, code == "ok", code, code, 1, []
        )

    def spend(self, account: str, nonce_after: int) -> None:
        """Another signer's transactions took `account`'s nonce to `nonce_after` (a block,
        with their receipts)."""
        for nonce in range(self.nonces[account], nonce_after):
            tx_hash = SUITE.hash(f"foreign {account} {nonce}".encode()).hex()
            self.foreign.append(self.receipt_of(tx_hash, len(self.foreign), "ok"))
        self.nonces[account] = nonce_after
        self.mempool = {
            h: t
            for h, t in self.mempool.items()
            if not (t.body.sender == account and t.body.nonce < nonce_after)
        }
        self.block()

    def _commit_state(self, nonces: dict[str, int], receipts: list[TxReceipt]) -> None:
        writes = {
            state_key("identity", f"account/{account}"): msgspec.msgpack.encode(
                {"nonce": nonce, "status": "active"}
            )
            for account, nonce in nonces.items()
        }
        self.store.write(self.tree.apply(self.height, writes))
        leaves = [receipt_leaf(SUITE, encode(receipt)) for receipt in receipts]
        self.leaves[self.height] = leaves
        self.in_block[self.height] = list(receipts)
        self.certify(self.height, receipts_root(SUITE, leaves))

    def certify(self, height: int, receipts: bytes, state_root: bytes | None = None) -> None:
        header = ExecutionHeader(
            chain_id=self.genesis.chain_id,
            epoch=0,
            height=height,
            block_id=SUITE.hash(f"block {height}".encode()),
            state_root=state_root or self.tree.root_hash(height),
            receipts_root=receipts,
        )
        keys = _forged_keys() if self.forge else validator_keys(4)
        self.certificates[height] = ExecutionCertificate(
            header,
            [
                ExecutionSignature(node_id, sign(SUITE, private, header, self.domain))
                for node_id, _, private in sorted(keys[:3])
            ],
        )

    # ------------------------------------------------------------------ admission

    def _admit(self, raw: bytes) -> dict[str, Any]:
        tx = decode(raw, Transaction)
        tx_hash = transaction_id(SUITE, tx.body).hex()
        self.submitted.append(tx_hash)
        body = tx.body
        forced = self.refuse.get(tx_hash) or self.refuse.get("all")
        code = (
            forced
            or ("expired" if body.expiry_height <= self.height else None)
            or ("duplicate" if tx_hash in self.mempool else None)
            or ("unknown_account" if body.sender not in self.nonces else None)
            or ("stale_nonce" if body.nonce < self.nonces[body.sender] else None)
            or (
                "nonce_taken"
                if any(
                    t.body.sender == body.sender and t.body.nonce == body.nonce
                    for t in self.mempool.values()
                )
                else None
            )
        )
        if code:
            return {"error": {"code": code, "message": code}}
        self.mempool[tx_hash] = tx
        return {"tx_hash": tx_hash, "status": "pending"}

    # ------------------------------------------------------------------ serving

    def transport(self, edit: Edit | None = None) -> httpx.MockTransport:
        """This node's API; with `edit`, as a node that rewrites its answers so."""

        def handle(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            self.paths.append(path)
            status, answer = self._answer(request, path)
            for rewrite in (edit, self.edit):
                if rewrite is not None:
                    status, answer = rewrite(path, status, answer)
            return httpx.Response(status, json=answer)

        return httpx.MockTransport(handle)

    def forged_receipt(self, tx_hash: str, code: str = "ok") -> dict[str, Any]:
        """A proof answer for `tx_hash` committed with `code` at the next height, in a block
        the validators never certified: its certificate signed by keys of the forger's."""
        receipt = TxReceipt(
            bytes.fromhex(tx_hash), self.height + 1, 0, code == "ok", code, "", 1, []
        )
        leaves = [receipt_leaf(SUITE, encode(receipt))]
        header = ExecutionHeader(
            chain_id=self.genesis.chain_id,
            epoch=0,
            height=self.height + 1,
            block_id=SUITE.hash(b"never"),
            state_root=self.tree.root_hash(self.height),
            receipts_root=receipts_root(SUITE, leaves),
        )
        certificate = ExecutionCertificate(
            header,
            [
                ExecutionSignature(node_id, sign(SUITE, private, header, self.domain))
                for node_id, _, private in _forged_keys()[:3]
            ],
        )
        proof = {
            "header": header_view(header),
            "certificate": encode(certificate).hex(),
            "receipt": encode(receipt).hex(),
            "receipt_proof": encode(receipt_proof(SUITE, leaves, 0)).hex(),
        }
        return {"tx_hash": tx_hash, "status": "committed", "proof": proof}

    def _answer(self, request: httpx.Request, path: str) -> Answer:
        if path == "/v1/status":
            return 200, {
                "chain_id": self.genesis.chain_id,
                "suite": self.genesis.suite,
                "genesis_hash": genesis_hash(self.genesis).hex(),
                "height": self.height,
            }
        if path == "/v1/nonces":
            asked = msgspec.json.decode(request.content)["accounts"]
            return 200, {"nonces": {a: self.nonces.get(a) for a in asked}}
        if path == "/v1/txs":
            raws = msgspec.msgpack.decode(request.content)
            return 200, {"results": [self._admit(raw) for raw in raws]}
        if match := re.fullmatch(r"/v1/tx/([0-9a-f]+)", path):
            return self._transaction(match[1])
        if match := re.fullmatch(r"/v1/blocks/(\d+)/receipts", path):
            height = int(match[1])
            if height not in self.in_block:
                return _missing(404, "not_found")
            listed = [
                {"tx_hash": r.tx_id.hex(), "ok": r.ok, "code": r.code}
                for r in self.in_block[height]
            ]
            return 200, {"height": height, "receipts": listed}
        if match := re.fullmatch(r"/v1/state/identity/account/(.+)", path):
            asked = request.url.params.get("height")
            height = self.height if asked is None else int(asked)
            if not 1 <= height <= self.height:
                return _missing(409, "height_unavailable")
            return self._account(match[1], height)
        return _missing(404, "not_found")

    def _transaction(self, tx_hash: str) -> Answer:
        receipt = self.receipts.get(tx_hash)
        if receipt is None:
            if tx_hash in self.mempool:
                return _missing(409, "not_committed")
            return _missing(404, "not_found")
        certificate = self.certificates[receipt.height]
        leaves = self.leaves[receipt.height]
        proof = {
            "header": header_view(certificate.header),
            "certificate": encode(certificate).hex(),
            "receipt": encode(receipt).hex(),
            "receipt_proof": encode(receipt_proof(SUITE, leaves, receipt.index)).hex(),
        }
        return 200, {"tx_hash": tx_hash, "status": "committed", "proof": proof}

    def _account(self, account: str, height: int) -> Answer:
        key = state_key("identity", f"account/{account}")
        value, proof = self.tree.get_with_proof(key, height)
        certificate = self.certificates[height]
        answer = StateAnswer(height, key, value, proof, self.tree.root_hash(height))
        return 200, {
            "contract": "identity",
            "key": f"account/{account}",
            "height": height,
            "value": None if value is None else msgspec.msgpack.decode(value),
            "proof": proof_object(
                certificate, header_view, [("identity", f"account/{account}", answer)]
            ),
        }


def _missing(status: int, code: str) -> Answer:
    return status, {"error": {"code": code, "message": code}}


def checks() -> ChainChecks:
    """A relay's checks against the test genesis's validators."""
    return ChainChecks(LightClient(GENESIS), GENESIS.mempool.transaction_bytes_max)
