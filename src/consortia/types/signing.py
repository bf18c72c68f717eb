"""Signing and hashing bytes with domain separation.

A signature is made over `SIGNING_DOMAIN || encode(payload)`, where every payload struct is
tagged (vote, timeout, proposal, tx, ...) and carries the chain id. So a vote can never be
replayed as a timeout, nor a message of one chain on another. Hashes of blocks and of payload
items use their own prefixes for the same reason.
"""

from __future__ import annotations

from typing import Final

from consortia.crypto import Suite
from consortia.types.consensus import BlockHeader, ProposalData, TimeoutData, VoteData
from consortia.types.encoding import encode
from consortia.types.transaction import TransactionBody

SIGNING_DOMAIN: Final = b"consortia/sig/v1\x00"
BLOCK_HASH_DOMAIN: Final = b"consortia/block/v1\x00"
LEAF_HASH_DOMAIN: Final = b"\x00"
NODE_HASH_DOMAIN: Final = b"\x01"

Signable = VoteData | TimeoutData | ProposalData | TransactionBody


def signing_bytes(payload: Signable) -> bytes:
    return SIGNING_DOMAIN + encode(payload)


def sign(suite: Suite, private_key: bytes, payload: Signable) -> bytes:
    return suite.sign(private_key, signing_bytes(payload))


def verify(suite: Suite, public_key: bytes, payload: Signable, signature: bytes) -> bool:
    return suite.verify(public_key, signing_bytes(payload), signature)


def block_id(suite: Suite, header: BlockHeader) -> bytes:
    return suite.hash(BLOCK_HASH_DOMAIN + encode(header))


def merkle_root(suite: Suite, items: list[bytes]) -> bytes:
    """A binary Merkle root with distinct leaf and node prefixes (no second-preimage tricks).

    An odd node at the end of a level is promoted unchanged. The root of no items is the hash
    of the empty string under the leaf prefix.
    """
    if not items:
        return suite.hash(LEAF_HASH_DOMAIN)
    level = [suite.hash(LEAF_HASH_DOMAIN + item) for item in items]
    while len(level) > 1:
        paired = [
            suite.hash(NODE_HASH_DOMAIN + level[i] + level[i + 1])
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
