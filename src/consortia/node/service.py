"""What a node offers its HTTP API: submit, look up, read, and report, as plain values.

Owns the translation from the node's internals (driver, chain, store, mempool, transport) to
JSON-ready dictionaries with hex ids, so the API layer stays a thin mapping of routes onto
these methods and never reaches into the node. Every method but `submit` and `submit_many`
(which wait for the journal's write) is synchronous and cheap (reads from memory or the store)
and runs on the node's event loop.

Must never change state but through `submit` (the mempool's admission); reads never write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.contracts import asset, identity_state, system
from consortia.execution.values import state_key
from consortia.mempool import Admission
from consortia.node.chain import CommittedBlock, tx_receipt
from consortia.node.driver import Driver
from consortia.node.journal import JournalWriter
from consortia.node.proven_reads import UncertifiedHeightError, proof_object, proven_height
from consortia.node.subscriptions import SubscriptionHub
from consortia.storage import StoredReceipt
from consortia.types.consensus import Block, QuorumCertificate
from consortia.types.encoding import encode
from consortia.types.execution import ExecutionCertificate, header_view, receipt_proof
from consortia.types.primitives import CURRENCY_DEFAULT
from consortia.types.signing import block_id

HEX_ID_LENGTH = 64
# Commits whose receipts /v1/blocks/{height}/receipts answers from memory (a follower keeps up).
RECENT_BLOCKS: Final = 16


class NotFoundError(Exception):
    """What the request names does not exist (an unknown block, transaction or account)."""


class JournalFailedError(Exception):
    """The node admitted the transactions but could not make them durable (its disk
    failed); it is stopping, and the client is told to send them elsewhere."""


class NotReadyError(Exception):
    """What was asked exists but cannot be proven yet; `status` is the HTTP status the API
    answers with, `code` its stable code."""

    code = "not_ready"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotCertifiedError(NotReadyError):
    """The block (or the block holding the transaction) is committed, but this node holds no
    execution certificate of it yet (or never will: see node/certifier.py)."""

    code = "not_certified"


class NotCommittedError(NotReadyError):
    """The transaction is known but not committed yet (a proof needs a committed block)."""

    code = "not_committed"


@dataclass(slots=True)
class NodeService:
    driver: Driver
    node_id: bytes
    connected_peers: Callable[[], set[bytes]]
    _recent: OrderedDict[int, CommittedBlock] = field(default_factory=OrderedDict)
    # The API's chain subscriptions, woken by every durable commit.
    subscriptions: SubscriptionHub = field(default_factory=SubscriptionHub)
    # The journal every admitted client transaction is written to before it is answered;
    # None only where nothing outlives the process (tests, the simulator-backed API).
    journal: JournalWriter | None = None

    def __post_init__(self) -> None:
        self.driver.on_commit.append(self._remember)
        self.driver.on_commit.append(self.subscriptions.committed)

    @property
    def chain(self) -> Any:
        return self.driver.chain

    # ------------------------------------------------------------------ transactions

    async def submit(self, raw: bytes) -> Admission:
        return (await self.submit_many([raw]))[0]

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        """Admit a client's batch in one mempool call; one answer per transaction, in order,
        once the admitted ones are in the node's journal (when it keeps one): a `pending`
        answer survives a crash of this node. JournalFailedError when the journal's write
        failed (the node is stopping)."""
        admissions = self.driver.submit_many(raws)
        if self.journal is not None:
            admitted = [raw for raw, answer in zip(raws, admissions, strict=True) if answer.ok]
            try:
                await self.journal.record(admitted)
            except Exception as error:  # the write failed (the node is stopping)
                raise JournalFailedError(
                    "the node could not write the transaction to its journal and is stopping;"
                    f" send it to another node ({type(error).__name__})"
                ) from error
        return admissions

    def transaction(self, tx_id: bytes) -> dict[str, Any]:
        receipt = self.chain.store.receipt(tx_id)
        if receipt is not None:
            return _receipt_view(receipt)
        if tx_id in self.driver.mempool:
            return {"tx_hash": tx_id.hex(), "status": "pending"}
        raise NotFoundError(f"no transaction {tx_id.hex()}")

    # ------------------------------------------------------------------ proofs

    def certificate(self, height: int) -> ExecutionCertificate | None:
        """The execution certificate of the committed block at `height`, if this node has it."""
        return self.driver.certifier.certificate(height)

    def certificate_view(self, height: int) -> dict[str, Any]:
        """GET /v1/blocks/{height}/certificate: NotFoundError for no such block,
        NotCertifiedError while it is not certified here."""
        committed = self.chain.store.height or 0
        if not 1 <= height <= committed:
            raise NotFoundError(f"no block {height}")
        certificate = self.certificate(height)
        if certificate is None:
            raise NotCertifiedError(f"block {height} has no execution certificate here yet", 404)
        return _certificate_view(certificate)

    def transaction_proof(self, tx_id: bytes) -> dict[str, Any]:
        """GET /v1/tx/{hash}?proof=true: the receipt, its canonical encoding, its proof
        against the receipts root of its block's execution header, and the certificate."""
        store = self.chain.store
        receipt = store.receipt(tx_id)
        if receipt is None:
            if tx_id in self.driver.mempool:
                raise NotCommittedError(f"transaction {tx_id.hex()} is not committed yet", 409)
            raise NotFoundError(f"no transaction {tx_id.hex()}")
        record = store.execution_record(receipt.height)
        certificate = self.certificate(receipt.height)
        if record is None or certificate is None:
            raise NotCertifiedError(
                f"block {receipt.height} holding {tx_id.hex()} has no execution certificate here",
                409,
            )
        proof = receipt_proof(self.chain.suite, record.receipt_leaves, receipt.index)
        view = _receipt_view(receipt)
        view["proof"] = {
            "receipt": encode(tx_receipt(receipt)).hex(),
            "receipt_proof": encode(proof).hex(),
            "certificate": encode(certificate).hex(),
            "header": header_view(certificate.header),
        }
        return view

    def epoch_proof(self, epoch: int) -> dict[str, Any]:
        """GET /v1/epochs/{epoch}/proof: the proof that `epoch` ended (its last block's header,
        naming the next validator set, and the QCs that committed it), for light clients."""
        response = self.chain.store.epoch_proof(epoch)
        if response is None:
            raise NotFoundError(f"no proof that epoch {epoch} ended")
        return {"epoch": epoch, "proof": encode(response).hex()}

    def view(self, raw: bytes, height: int | None) -> dict[str, Any]:
        """A signed read request's outcome."""
        self._check_height(height)
        receipt = self.chain.engine.view(raw, height)
        return {
            "ok": receipt.ok,
            "code": receipt.code,
            "message": receipt.message,
            "gas_used": receipt.gas_used,
            "result": receipt.result,
            "height": height if height is not None else self.chain.height,
        }

    # ------------------------------------------------------------------ blocks and state

    def block(self, height: int | None, *, encoded: bool = False) -> dict[str, Any]:
        """A committed block's view; with `encoded`, also the block's canonical encoding
        (hex), which a client hashes and checks against a certified block id."""
        store = self.chain.store
        at = store.height if height is None else height
        if at is None or at < 1:
            raise NotFoundError("no block yet" if height is None else f"no block {height}")
        block = store.block(at)
        record = store.commit_record(at)
        if block is None or record is None:
            raise NotFoundError(f"no block {at}")
        view = _block_view(block, block_id(self.chain.suite, block.header), record.certificate)
        if encoded:
            view["encoded"] = encode(block).hex()
        return view

    def block_receipts(self, height: int) -> dict[str, Any]:
        """Each transaction of the committed block at `height`, in block order: its hash,
        whether it succeeded and its code (what a client following commits needs, without
        one request per transaction). The last RECENT_BLOCKS commits are answered from
        memory (what the commit recorded); older blocks from the store."""
        recent = self._recent.get(height)
        if recent is not None:
            return _receipts_view(recent.block, recent.receipts)
        chain = self.chain
        block = chain.store.block(height) if height >= 1 else None
        if block is None:
            raise NotFoundError(f"no block {height}")
        receipts = []
        for raw in block.payload:
            receipt = chain.store.receipt(chain.engine.receipt_id(raw))
            assert receipt is not None, f"a committed transaction of block {height} has no receipt"
            receipts.append(receipt)
        return _receipts_view(block, receipts)

    def _remember(self, committed: list[CommittedBlock]) -> None:
        """Keep the latest commits' receipts (references only: nothing is copied)."""
        for entry in committed:
            self._recent[entry.block.header.height] = entry
        while len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)

    def status(self) -> dict[str, Any]:
        chain = self.chain
        tip = chain.store.tip()
        replica = self.driver.replica
        contracts = {}
        for contract in BUILTIN_CONTRACTS:
            record = system.read_deployment(chain.engine.query, contract.name)
            if record is not None:
                contracts[contract.name] = {
                    "active_version": record.get("active_version"),
                    "status": record.get("status"),
                }
        return {
            "chain_id": chain.genesis.chain_id,
            "suite": chain.genesis.suite,
            "contracts": contracts,
            "node_id": self.node_id.hex(),
            "protocol_version": chain.genesis.protocol_version,
            "genesis_hash": chain.genesis_hash.hex(),
            "epoch": replica.epoch,
            "round": replica.round,
            "height": tip.height if tip else 0,
            "block_hash": tip.block_id.hex() if tip else chain.genesis_id.hex(),
            "state_root": chain.engine.root.hex(),
            "peers": sorted(peer.hex() for peer in self.connected_peers()),
            "validators": [
                {"node_id": v.node_id.hex(), "voting_power": v.voting_power}
                for v in replica.validators.validators
            ],
            "mempool": {
                "transactions": len(self.driver.mempool),
                "bytes": self.driver.mempool.size_bytes,
            },
        }

    def nonces(self, accounts: list[str]) -> dict[str, Any]:
        """The next nonce of each account at the latest committed height (null where no
        such account exists): what the mempool admits next, for many accounts at once."""
        chain = self.chain
        return {
            "height": chain.height,
            "nonces": {account: chain.next_nonce(account) for account in accounts},
        }

    def account(self, account_id: str, *, proof: bool = False) -> dict[str, Any]:
        """The account's record and balances; with `proof`, at the latest certified height,
        each entry (the record, a balance per currency) proven under its state root."""
        chain = self.chain
        height, certificate = None, None
        if proof:
            height, certificate = self._proven(None)
        record = identity_state.read_account(lambda c, k: chain.query(c, k, height), account_id)
        if record is None:
            raise NotFoundError(f"no account {account_id!r}")
        keys = [(identity_state.CONTRACT, identity_state.account_key(account_id))]
        balances: dict[str, int] = {}
        for currency in self._currencies():
            key = asset.balance_key(currency, account_id)
            keys.append((asset.CONTRACT, key))
            balances[currency] = int(chain.query(asset.CONTRACT, key, height) or 0)
        view = {
            "id": account_id,
            "nonce": int(record.get("nonce", 0)),
            "status": record.get("status"),
            "roles": record.get("roles", []),
            "member": record.get("sponsor") or record.get("member"),
            "public_key": record.get("public_key"),
            "balances": balances,
            "balance": balances.get(CURRENCY_DEFAULT, 0),
        }
        if certificate is not None:
            answers = [(c, k, chain.state_answer(c, k, height)) for c, k in keys]
            view["proof"] = proof_object(certificate, header_view, answers)
        return view

    def _currencies(self) -> list[str]:
        """The chain's currencies (each has an issuer), from the ordered state table."""
        issuers = state_key(asset.CONTRACT, asset.currencies_prefix())
        return [key[len(issuers) :].decode() for key in self.chain.store.state_keys(issuers)]

    def _proven(self, height: int | None) -> tuple[int, ExecutionCertificate]:
        try:
            return proven_height(self.chain, self.certificate, height)
        except UncertifiedHeightError as error:
            raise NotCertifiedError(str(error), 409) from None

    def state(
        self, contract: str, key: str, height: int | None, *, proof: bool = False
    ) -> dict[str, Any]:
        """A state value; with `proof`, at `height` or the latest certified height, proven
        under that height's certified state root (a proof of absence for no value)."""
        if proof:
            at, certificate = self._proven(height)
            answer = self.chain.state_answer(contract, key, at)
            return {
                "contract": contract,
                "key": key,
                "height": at,
                "value": None if answer.value is None else msgspec.msgpack.decode(answer.value),
                "proof": proof_object(certificate, header_view, [(contract, key, answer)]),
            }
        self._check_height(height)
        return {
            "contract": contract,
            "key": key,
            "height": height if height is not None else self.chain.height,
            "value": self.chain.query(contract, key, height),
        }

    def _check_height(self, height: int | None) -> None:
        if height is not None and not 0 <= height <= self.chain.height:
            raise NotFoundError(f"height {height} is not committed")


def _qc_view(qc: QuorumCertificate) -> dict[str, Any]:
    return {
        "epoch": qc.epoch,
        "round": qc.round,
        "block_hash": qc.block_id.hex(),
        "height": qc.height,
        "signers": [entry.index for entry in qc.signatures],
        "signatures": [entry.signature.hex() for entry in qc.signatures],
    }


def _certificate_view(certificate: ExecutionCertificate) -> dict[str, Any]:
    return {
        "height": certificate.header.height,
        "header": header_view(certificate.header),
        "signers": [entry.node_id.hex() for entry in certificate.signatures],
        "signatures": [entry.signature.hex() for entry in certificate.signatures],
        "encoded": encode(certificate).hex(),
    }


def _block_view(block: Block, block_hash: bytes, certificate: QuorumCertificate) -> dict[str, Any]:
    header = block.header
    return {
        "height": header.height,
        "hash": block_hash.hex(),
        "parent_hash": header.parent_id.hex(),
        "epoch": header.epoch,
        "round": header.round,
        "author": header.author.hex(),
        "timestamp_ms": header.timestamp_ms,
        "payload_root": header.payload_root.hex(),
        "transactions": [item.hex() for item in block.payload],
        "justify": _qc_view(header.justify),
        "qc": _qc_view(certificate),
    }


def _receipts_view(block: Block, receipts: list[StoredReceipt]) -> dict[str, Any]:
    return {
        "height": block.header.height,
        "timestamp_ms": block.header.timestamp_ms,
        "receipts": [
            {"tx_hash": receipt.tx_id.hex(), "ok": receipt.ok, "code": receipt.code}
            for receipt in receipts
        ],
    }


def _receipt_view(receipt: StoredReceipt) -> dict[str, Any]:
    return {
        "tx_hash": receipt.tx_id.hex(),
        "status": "committed" if receipt.ok else "failed",
        "height": receipt.height,
        "index": receipt.index,
        "receipt": {
            "ok": receipt.ok,
            "code": receipt.code,
            "message": receipt.message,
            "gas_used": receipt.gas_used,
            "events": [msgspec.to_builtins(event) for event in receipt.events],
            "result": msgspec.to_builtins(receipt.result),
        },
    }
