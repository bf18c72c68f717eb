"""Execution headers and certificates: what the validators sign after executing a block.

The consensus header orders blocks but does not carry the state they lead to (a block is
executed once committed). After executing committed block h, each validator signs an
`ExecutionHeader` (the block's id, the state root and the receipts root after it) and sends it
to the others; more than 2/3 of the voting power signing the same header is an
`ExecutionCertificate`. A light client that trusts the validator set of the header's epoch
trusts the header, and through its roots every receipt and state entry proven against it.

The header is tagged (`exec_header`) and carries the chain id, so under the chain's
`SigningDomain` an execution signature never verifies as a vote, a timeout or a proposal,
nor one of those as an execution signature.

Receipts root: a binary Merkle tree (the leaf and node prefixes of `signing.merkle_root`, an
odd node promoted) over the canonical encodings of a block's receipts in order, bound to their
count: `hash(RECEIPTS_ROOT_DOMAIN || count (8 bytes, big-endian) || tree root)`. So a proof
names its leaf's position among exactly `count` leaves and cannot be replayed at another.

Owns these structs and the pure functions that build and check them (client/ uses them);
never performs I/O, keeps no state.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from consortia.crypto import Suite
from consortia.types.consensus import EpochConfig
from consortia.types.primitives import (
    PAYLOAD_ITEMS_MAX,
    U64,
    VALIDATORS_MAX,
    ChainId,
    Epoch,
    Hash,
    Height,
    NodeId,
    Signature,
)

RECEIPTS_ROOT_DOMAIN: Final = b"consortia/receipts/v1\x00"
RECEIPT_LEAF_DOMAIN: Final = b"\x00"  # as signing.LEAF_HASH_DOMAIN
RECEIPT_NODE_DOMAIN: Final = b"\x01"  # as signing.NODE_HASH_DOMAIN
# A receipts proof climbs at most this many levels (2**32 leaves is far above a block's).
PROOF_DEPTH_MAX: Final = 32


class _Canonical(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Immutable, encoded as an array, nothing extra (as types.consensus)."""


class ExecutionHeader(_Canonical, frozen=True, tag="exec_header"):
    """What a validator signs after executing committed block `height`: the state it reached."""

    chain_id: ChainId
    epoch: Epoch  # the block's epoch: its validators sign
    height: Height
    block_id: Hash
    state_root: Hash
    receipts_root: Hash


class ExecutionSignature(_Canonical, frozen=True, tag="exec_signer"):
    node_id: NodeId
    signature: Signature


class ExecutionCertificate(_Canonical, frozen=True, tag="exec_certificate"):
    """Signatures of one header from more than 2/3 of its epoch's voting power, sorted by
    strictly increasing node id (so each signer counts once)."""

    header: ExecutionHeader
    signatures: Annotated[list[ExecutionSignature], Meta(min_length=1, max_length=VALIDATORS_MAX)]

    def __post_init__(self) -> None:
        if any(a.node_id >= b.node_id for a, b in pairwise(self.signatures)):
            raise ValueError("signatures must be sorted by strictly increasing node id")


class ReceiptEvent(_Canonical, frozen=True, tag="receipt_event"):
    contract: str
    name: str
    fields: dict[str, Any]


class TxReceipt(_Canonical, frozen=True, tag="receipt"):
    """A transaction's receipt as the receipts root commits to it: where it sits (height and
    index in the block) and what it produced."""

    tx_id: Hash
    height: Height
    index: Annotated[int, Meta(ge=0, lt=PAYLOAD_ITEMS_MAX)]
    ok: bool
    code: str
    message: str
    gas_used: U64
    events: list[ReceiptEvent]
    result: Any = None


class ReceiptProof(_Canonical, frozen=True, tag="receipt_proof"):
    """The siblings from leaf `index` up to the tree root, among `count` leaves (a promoted
    odd node has no sibling at its level, so levels may outnumber siblings)."""

    index: Annotated[int, Meta(ge=0, lt=PAYLOAD_ITEMS_MAX)]
    count: Annotated[int, Meta(ge=1, le=PAYLOAD_ITEMS_MAX)]
    siblings: Annotated[list[Hash], Meta(max_length=PROOF_DEPTH_MAX)]


# ---------------------------------------------------------------------- receipts root


def receipt_leaf(suite: Suite, encoded_receipt: bytes) -> bytes:
    """The leaf hash of one receipt's canonical encoding."""
    return suite.hash(RECEIPT_LEAF_DOMAIN + encoded_receipt)


def _node(suite: Suite, left: bytes, right: bytes) -> bytes:
    return suite.hash(RECEIPT_NODE_DOMAIN + left + right)


def _bind(suite: Suite, count: int, tree_root: bytes) -> bytes:
    return suite.hash(RECEIPTS_ROOT_DOMAIN + count.to_bytes(8, "big") + tree_root)


def receipts_root(suite: Suite, leaves: list[bytes]) -> bytes:
    """The receipts root of a block from its receipts' leaf hashes, in order."""
    if not leaves:
        return _bind(suite, 0, suite.hash(RECEIPT_LEAF_DOMAIN))
    level = list(leaves)
    while len(level) > 1:
        paired = [_node(suite, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return _bind(suite, len(leaves), level[0])


def receipt_proof(suite: Suite, leaves: list[bytes], index: int) -> ReceiptProof:
    """The proof that `leaves[index]` is the index-th of these leaves."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"no receipt {index} among {len(leaves)}")
    siblings: list[bytes] = []
    level, position = list(leaves), index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        paired = [_node(suite, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level, position = paired, position // 2
    return ReceiptProof(index=index, count=len(leaves), siblings=siblings)


def verify_receipt_proof(
    suite: Suite, root: bytes, encoded_receipt: bytes, proof: ReceiptProof
) -> bool:
    """Whether `encoded_receipt` is receipt `proof.index` of the block whose receipts root is
    `root`. The caller also checks that the decoded receipt names that index and height."""
    if not 0 <= proof.index < proof.count:
        return False
    node = receipt_leaf(suite, encoded_receipt)
    siblings = iter(proof.siblings)
    width, position = proof.count, proof.index
    while width > 1:
        if position ^ 1 < width:
            sibling = next(siblings, None)
            if sibling is None:
                return False
            node = _node(suite, sibling, node) if position % 2 else _node(suite, node, sibling)
        width, position = (width + 1) // 2, position // 2
    if next(siblings, None) is not None:
        return False
    return _bind(suite, proof.count, node) == root


# ---------------------------------------------------------------------- certificates


def certificate_problem(
    suite: Suite,
    signing_bytes: bytes,
    certificate: ExecutionCertificate,
    config: EpochConfig,
) -> str | None:
    """Why `certificate` is not a quorum of valid signatures of its header by `config`'s
    validators (the quorum a consensus QC needs: more than 2/3 of the voting power), or None
    when it is. `signing_bytes` are the header's bytes under the chain's signing domain
    (`SigningDomain.signing_bytes(certificate.header)`)."""
    if certificate.header.epoch != config.epoch:
        return (
            f"the header is of epoch {certificate.header.epoch}, the validators of {config.epoch}"
        )
    power = {v.node_id: (v.public_key, v.voting_power) for v in config.validators}
    items = []
    total = 0
    for entry in certificate.signatures:
        known = power.get(entry.node_id)
        if known is None:
            return f"signer {entry.node_id.hex()[:16]} is not a validator of epoch {config.epoch}"
        items.append((known[0], signing_bytes, entry.signature))
        total += known[1]
    if total < config.quorum_power:
        return f"signers hold {total} of the {config.quorum_power} voting power a quorum needs"
    if not all(suite.verify_many(items)):
        return "a signature does not verify"
    return None


def header_view(header: ExecutionHeader) -> dict[str, Any]:
    """An execution header as the API shows it (and as a client rebuilds it once checked):
    hashes in hex, the block id named `block_hash` as everywhere else in the API."""
    return {
        "chain_id": header.chain_id,
        "epoch": header.epoch,
        "height": header.height,
        "block_hash": header.block_id.hex(),
        "state_root": header.state_root.hex(),
        "receipts_root": header.receipts_root.hex(),
    }
