"""Signing and hashing bytes with domain separation.

A signature is made over `SIGNING_DOMAIN || genesis hash || encode(payload)`, where every
payload struct is tagged (vote, timeout, proposal, tx, execution header) and carries the
chain id. So a vote can never be replayed as a timeout, and no signed message of one chain
verifies on another: not even on a chain that reuses the chain id (user-chosen, or a short
random one) and the same keys, as a rehearsal chain and production might. The genesis hash
is the hash of the chain's genesis document (`types.genesis.genesis_hash`); it is not sent
with messages, every verifier supplies its own (`SigningDomain`). Transaction ids hash the
signed body alone under their own tag, so a re-signed body (SM2 signatures are randomised)
is the same transaction. Hashes of blocks and of payload items use their own prefixes for
the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consortia.crypto import SigningKey, Suite
from consortia.types.consensus import BlockHeader, ProposalData, TimeoutData, VoteData
from consortia.types.encoding import encode
from consortia.types.execution import ExecutionHeader
from consortia.types.transaction import TransactionBody

SIGNING_DOMAIN: Final = b"consortia/sig/v2\x00"
TX_ID_DOMAIN: Final = b"consortia/txid/v1\x00"
GENESIS_HASH_SIZE: Final = 32
BLOCK_HASH_DOMAIN: Final = b"consortia/block/v1\x00"
LEAF_HASH_DOMAIN: Final = b"\x00"
NODE_HASH_DOMAIN: Final = b"\x01"

Signable = VoteData | TimeoutData | ProposalData | TransactionBody | ExecutionHeader


@dataclass(frozen=True, slots=True)
class SigningDomain:
    """What every signature of one chain commits to: the hash of its genesis document."""

    genesis_hash: bytes

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != GENESIS_HASH_SIZE:
            raise ValueError(f"a genesis hash is {GENESIS_HASH_SIZE} bytes")

    def signing_bytes(self, payload: Signable) -> bytes:
        return SIGNING_DOMAIN + self.genesis_hash + encode(payload)


def sign(
    suite: Suite, private_key: bytes | SigningKey, payload: Signable, domain: SigningDomain
) -> bytes:
    """The signature of `payload` for this chain; a frequent signer passes a held
    `SigningKey` (the key expansion is then paid once)."""
    message = domain.signing_bytes(payload)
    if isinstance(private_key, SigningKey):
        return private_key.sign(message)
    return suite.sign(private_key, message)


def verify(
    suite: Suite, public_key: bytes, payload: Signable, signature: bytes, domain: SigningDomain
) -> bool:
    return suite.verify(public_key, domain.signing_bytes(payload), signature)


def transaction_id(suite: Suite, body: TransactionBody) -> bytes:
    """A transaction's id: its signed body's hash, never its signature's."""
    return suite.hash(TX_ID_DOMAIN + encode(body))


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
