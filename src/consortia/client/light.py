"""The light client: check what a node answers against the validators, trusting no node.

A light client knows the chain's genesis document (the validator set of epoch 0 and the hash
every signature commits to) and nothing else. It learns each later validator set from the
proof that the previous epoch ended (`GET /v1/epochs/{epoch}/proof`: the ending block's header,
which names the next set, and the QCs of the epoch's validators that committed it), checked
against the set it already trusts; any node may serve these proofs, a wrong one is refused.
With the set of a block's epoch it checks the block's `ExecutionCertificate` (a quorum of that
set signed the execution header), and with the header's receipts root a receipt's proof.

Each epoch is bound to its heights: the proof that epoch e ended names its last height, so a
certificate of epoch e is taken only for a height after the end of e - 1 and (once e ended) up
to its own end; validators of an ended epoch, bound by nothing any more, cannot certify later
heights. The limit: for heights after the latest epoch this client learnt, it trusts that
epoch's set; a client must follow the newest epoch proofs (`follow_epochs`) to notice an
epoch change (the usual freshness assumption of light clients).

Owns these checks; pure (no I/O, no clock): the clients in `sdk.py` fetch what `needs` names
and hand it to `learn_epoch`. Imports only crypto and types. Every failed check is a
`VerificationError` (code `verification_failed`) saying what failed.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from consortia.crypto import Suite
from consortia.crypto import suite as get_suite
from consortia.types.consensus import (
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    Validator,
)
from consortia.types.encoding import decode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ReceiptProof,
    TxReceipt,
    certificate_problem,
    header_view,
    verify_receipt_proof,
)
from consortia.types.genesis import Genesis, genesis_hash
from consortia.types.signing import SigningDomain, block_id

# Validator sets a light client keeps (each one proven from the one before).
EPOCHS_KEPT_MAX: Final = 4096
# Failed receipts' codes given before the sender's nonce is spent (the engine's admission
# refusals): the same transaction may still be committed later, so such a failure is not final.
NONCE_FREE_CODES: Final = frozenset(
    {
        "malformed_transaction",
        "wrong_chain",
        "expired",
        "expiry_too_far",
        "bad_signature",
        "unknown_account",
        "account_cancelled",
        "account_frozen",
        "wrong_key",
        "bad_nonce",
        "unknown_contract",
        "contract_retired",
        "contract_frozen",
        "wrong_contract_version",
    }
)


class VerificationError(Exception):
    """A node's answer did not check out: `what` names the check that failed."""

    code: Final = "verification_failed"

    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"verification_failed: {what}: {message}")
        self.what, self.message = what, message


def genesis_validator_set(genesis: Genesis) -> EpochConfig:
    """Epoch 0's validator set, from the genesis document (as every node computes it)."""
    validators = sorted(
        (
            Validator(bytes.fromhex(v.node_id), bytes.fromhex(v.public_key), v.voting_power)
            for v in genesis.validators
        ),
        key=lambda v: v.node_id,
    )
    return EpochConfig(epoch=0, validators=validators)


def verify_certificate(
    suite: Suite,
    certificate: ExecutionCertificate,
    validator_set: EpochConfig,
    *,
    domain: SigningDomain,
    chain_id: str | None = None,
) -> ExecutionHeader:
    """The certified header, when signers holding a quorum (more than 2/3) of `validator_set`'s
    voting power signed it under `domain`; VerificationError otherwise."""
    header = certificate.header
    if chain_id is not None and header.chain_id != chain_id:
        raise VerificationError("certificate", f"the header is of chain {header.chain_id!r}")
    problem = certificate_problem(suite, domain.signing_bytes(header), certificate, validator_set)
    if problem is not None:
        raise VerificationError("certificate", problem)
    return header


def qc_problem(
    suite: Suite, domain: SigningDomain, chain_id: str, qc: QuorumCertificate, config: EpochConfig
) -> str | None:
    """Why `qc` is not a quorum of valid votes of `config`'s validators, or None."""
    if qc.epoch != config.epoch:
        return f"the QC is of epoch {qc.epoch}, the validators of {config.epoch}"
    indexes = [entry.index for entry in qc.signatures]
    if any(not 0 <= i < len(config.validators) for i in indexes) or len(set(indexes)) != len(
        indexes
    ):
        return "the QC names an unknown or repeated signer"
    if sum(config.validators[i].voting_power for i in indexes) < config.quorum_power:
        return "the QC's signers hold less than a quorum"
    message = domain.signing_bytes(qc.vote_data(chain_id))
    items = [(config.validators[e.index].public_key, message, e.signature) for e in qc.signatures]
    if not all(suite.verify_many(items)):
        return "a QC signature does not verify"
    return None


def verify_epoch_change(
    suite: Suite,
    domain: SigningDomain,
    chain_id: str,
    response: EpochChangeResponse,
    config: EpochConfig,
) -> EpochConfig:
    """The next validator set, when `response` proves that `config`'s epoch ended: its
    ending header names the next set, the proof's headers descend from it in that epoch, the
    last two in consecutive rounds, and a quorum of `config` certified the last (the
    two-chain commit rule, as consensus/epoch_change.py checks it)."""
    ending = response.ending
    following = ending.next_epoch
    if ending.chain_id != chain_id or ending.epoch != config.epoch:
        raise VerificationError("epoch_proof", f"not a block of epoch {config.epoch}")
    if following is None or following.epoch != config.epoch + 1:
        raise VerificationError("epoch_proof", "the block does not hand over to the next epoch")
    previous, previous_id = ending, block_id(suite, ending)
    for header in response.proof.headers:
        if header.parent_id != previous_id or header.epoch != ending.epoch:
            raise VerificationError("epoch_proof", "the proof's headers do not descend")
        if header.height != previous.height + 1 or header.round <= previous.round:
            raise VerificationError("epoch_proof", "the proof's heights or rounds do not rise")
        previous, previous_id = header, block_id(suite, header)
    headers = response.proof.headers
    before_last = headers[-2] if len(headers) > 1 else ending
    if headers[-1].round != before_last.round + 1:
        raise VerificationError("epoch_proof", "the last two blocks are not consecutive")
    qc = response.proof.qc
    if qc.block_id != previous_id:
        raise VerificationError("epoch_proof", "the QC certifies another block")
    problem = qc_problem(suite, domain, chain_id, qc, config)
    if problem is not None:
        raise VerificationError("epoch_proof", problem)
    return following


def decode_strict(data: bytes, type_: Any, what: str) -> Any:
    try:
        return decode(data, type_)
    except Exception as error:  # decode raises only errors.DecodeError (client/ imports no errors)
        raise VerificationError(what, f"not a canonical encoding: {error}") from None


def decode_certificate(encoded_hex: Any) -> ExecutionCertificate:
    """An `ExecutionCertificate` from the hex of its canonical encoding, as the node serves it
    (`encoded` in `/v1/blocks/{height}/certificate`, `proof.certificate` with a proof);
    unchecked until `verify_certificate`."""
    certificate: ExecutionCertificate = decode_strict(
        from_hex(encoded_hex, "certificate"), ExecutionCertificate, "certificate"
    )
    return certificate


def from_hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise VerificationError(what, "not hex") from None


class LightClient:
    """Validator sets proven from the genesis on, and the checks that use them."""

    def __init__(self, genesis: Genesis) -> None:
        self.chain_id = genesis.chain_id
        self.suite = get_suite(genesis.suite)
        self.domain = SigningDomain(genesis_hash(genesis))
        # epoch -> its validator set. Invariant: each proven from the one before (epoch 0:
        # the genesis), contiguous from 0.
        self._sets: dict[int, EpochConfig] = {0: genesis_validator_set(genesis)}
        # ended epoch -> the height of its last block (from its proof). Invariant: known for
        # every epoch below the latest.
        self._ends: dict[int, int] = {}

    @classmethod
    def from_genesis_json(cls, data: bytes) -> LightClient:
        """From the bytes of a chain's genesis.json."""
        try:
            return cls(msgspec.json.decode(data, type=Genesis))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise VerificationError("genesis", str(error)) from None

    @property
    def latest_epoch(self) -> int:
        return max(self._sets)

    def validator_set(self, epoch: int) -> EpochConfig | None:
        return self._sets.get(epoch)

    def needs(self, epoch: int) -> int | None:
        """The epoch whose end must be proven next to know `epoch`'s validators, or None."""
        return None if epoch in self._sets else self.latest_epoch

    def learn_epoch(self, encoded_proof: bytes) -> EpochConfig:
        """Learn the next validator set from the proof that the latest known epoch ended
        (the canonical encoding of an `EpochChangeResponse`, as the node serves it), and the
        height that epoch ended at. A proof of any other epoch is refused."""
        response: EpochChangeResponse = decode_strict(
            encoded_proof, EpochChangeResponse, "epoch_proof"
        )
        latest = self.latest_epoch
        if response.ending.epoch != latest:
            raise VerificationError(
                "epoch_proof",
                f"a proof that epoch {response.ending.epoch} ended; the latest known is {latest}",
            )
        following = verify_epoch_change(
            self.suite, self.domain, self.chain_id, response, self._sets[latest]
        )
        if len(self._sets) >= EPOCHS_KEPT_MAX:
            raise VerificationError("epoch_proof", "too many epochs kept")
        self._sets[following.epoch] = following
        self._ends[latest] = response.ending.height
        return following

    def epoch_heights(self, epoch: int) -> tuple[int, int | None]:
        """The first and last height of `epoch` (last None while it has not ended)."""
        first = 1 if epoch == 0 else self._ends.get(epoch - 1, 0) + 1
        return first, self._ends.get(epoch)

    def follow_limit(self, epoch: int) -> int:
        """How many epoch proofs learning `epoch`'s validators may take; VerificationError for
        a negative or absurd epoch (a lying answer must not keep a client fetching)."""
        if not 0 <= epoch < self.latest_epoch + EPOCHS_KEPT_MAX:
            raise VerificationError("epoch", f"epoch {epoch} is out of reach")
        return max(0, epoch - self.latest_epoch)

    def verify_certificate(
        self, certificate: ExecutionCertificate, height: int | None = None
    ) -> ExecutionHeader:
        """The certified header, when a quorum of its epoch's validators signed it, its
        height is one of that epoch's and (given) is `height`."""
        header = certificate.header
        config = self._sets.get(header.epoch)
        if config is None:
            raise VerificationError(
                "certificate", f"epoch {header.epoch}'s validators are not known"
            )
        if height is not None and header.height != height:
            raise VerificationError(
                "certificate", f"the header is of height {header.height}, not {height}"
            )
        first, last = self.epoch_heights(header.epoch)
        if header.height < first or (last is not None and header.height > last):
            raise VerificationError(
                "certificate",
                f"epoch {header.epoch} runs from height {first} to {last}; "
                f"the header is of height {header.height}",
            )
        return verify_certificate(
            self.suite, certificate, config, domain=self.domain, chain_id=self.chain_id
        )

    def verify_receipt(
        self, answer: dict[str, Any], tx_hash: str | None = None
    ) -> tuple[TxReceipt, ExecutionHeader]:
        """The receipt in a `GET /v1/tx/{hash}?proof=true` answer and the certified header it
        is proven against, when its proof, header and certificate check out (the epoch's
        validators must be known: see `needs`)."""
        proof = answer.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("answer", "no proof in the answer")
        header = self.verify_certificate(decode_certificate(proof.get("certificate")))
        encoded = from_hex(proof.get("receipt"), "receipt")
        receipt: TxReceipt = decode_strict(encoded, TxReceipt, "receipt")
        receipt_proof: ReceiptProof = decode_strict(
            from_hex(proof.get("receipt_proof"), "receipt_proof"), ReceiptProof, "receipt_proof"
        )
        if receipt.height != header.height or receipt.index != receipt_proof.index:
            raise VerificationError("receipt", "the receipt names another height or index")
        if tx_hash is not None and receipt.tx_id.hex() != tx_hash.lower():
            raise VerificationError("receipt", "the receipt is of another transaction")
        if not verify_receipt_proof(self.suite, header.receipts_root, encoded, receipt_proof):
            raise VerificationError("receipt_proof", "the receipt is not under the receipts root")
        return receipt, header


def claimed_epoch(answer: dict[str, Any]) -> int:
    """The epoch a proof answer says its header is of (unchecked: only to know which
    validator set to learn before checking it)."""
    try:
        return int(answer["proof"]["header"]["epoch"])
    except (KeyError, TypeError, ValueError):
        raise VerificationError("answer", "no header epoch in the answer") from None


def receipt_record(receipt: TxReceipt, header: ExecutionHeader) -> dict[str, Any]:
    """A verified receipt in the form `GET /v1/tx/{hash}` answers, with the certified header.
    `final` is False for a failure given before the nonce was spent (`NONCE_FREE_CODES`):
    a faulty leader may commit a transaction early to fail it, and the same one may still be
    committed later (with the same hash), so such a receipt is not the transaction's outcome."""
    return {
        "final": receipt.ok or receipt.code not in NONCE_FREE_CODES,
        "tx_hash": receipt.tx_id.hex(),
        "status": "committed" if receipt.ok else "failed",
        "height": receipt.height,
        "index": receipt.index,
        "receipt": {
            "ok": receipt.ok,
            "code": receipt.code,
            "message": receipt.message,
            "gas_used": receipt.gas_used,
            "events": [
                {"contract": e.contract, "name": e.name, "fields": msgspec.to_builtins(e.fields)}
                for e in receipt.events
            ],
            "result": msgspec.to_builtins(receipt.result),
        },
        "verified": True,
        "header": header_record(header),
    }


def header_record(header: ExecutionHeader) -> dict[str, Any]:
    """A verified header in the form the API shows it."""
    return header_view(header)
