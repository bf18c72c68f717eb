"""The chain's crypto suite as a running contract call may use it: deterministic checks only.

Owns `SuiteChecks`, the part of the `Host` (contract.py) that answers a contract's questions
about keys, signatures and sealed records with the chain's suite, and tells it the chain's
identity (its id and genesis hash, which signed messages commit to): whether a public key is
an encryption key of the suite, whether a signature verifies under a public key, the suite's
hash of some bytes, what a sealed record (`consortia.privacy.envelope`) says about itself
(its suite, label, commitment and who holds a wrapped key, as a `SealedView`), and whether a
disclosed value opens a record's commitment. Contracts may not import the suite or the
envelope format (the import allow-list), so they ask through their `Context`, which charges
the gas first.

Must never: hand a contract the suite object, a key or anything random (no key generation,
no sealing: a contract computes the same thing on every node); raise on malformed input (a
malformed key or record is an answer, False or None, that the contract refuses with its own
code); decrypt anything (nothing here holds a private key); give an answer that depends on the
interpreter's stack depth (a receipt is consensus data).
"""

from __future__ import annotations

from typing import Any

from consortia.crypto import Suite
from consortia.errors import ConsortiaError
from consortia.execution.contract import SealedView
from consortia.privacy import envelope
from consortia.types.encoding import decode


class SuiteChecks:
    """The deterministic questions a contract may ask of the chain's suite."""

    __slots__ = ("_chain_id", "_genesis_hash", "_suite")

    def __init__(self, suite: Suite, chain_id: str, genesis_hash: bytes) -> None:
        self._suite = suite
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash

    def chain_id(self) -> str:
        return self._chain_id

    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    def signature_valid(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        # Suite.verify answers False for anything malformed, never raises.
        return bool(self._suite.verify(public_key, message, signature))

    def hash(self, data: bytes) -> bytes:
        return bytes(self._suite.hash(data))

    def suite_name(self) -> str:
        return self._suite.name

    def valid_encryption_public_key(self, public_key: bytes) -> bool:
        return bool(self._suite.valid_encryption_public_key(public_key))

    def wrapped_key_size(self) -> int:
        return int(self._suite.wrapped_key_size)

    def decode_sealed(self, encoded: str) -> SealedView | None:
        try:
            sealed = envelope.decode_sealed(encoded)
        except ConsortiaError:
            return None
        return SealedView(
            suite=str(sealed.suite),
            label=str(sealed.label),
            commitment=bytes(sealed.commitment).hex(),
            readers=tuple((str(key.party), int(key.key_version)) for key in sealed.keys),
            size=len(encoded) // 2,
        )

    def opening_matches(self, label: str, commitment: bytes, salt: bytes, value: bytes) -> bool:
        """`value` is the canonical encoding of the record's value (a contract argument is
        flat, so a disclosed map or list travels encoded, as hex)."""
        try:
            decoded: Any = decode(value, Any, size_max=envelope.SEALED_BYTES_MAX)
            return envelope.verify_opening(self._suite, commitment, label, salt, decoded)
        except (ConsortiaError, RecursionError):
            # A value nested past the interpreter's recursion limit raises RecursionError at
            # a depth that depends on the caller's stack, so one node would decode it and
            # another not. Both must answer False: a value nested deeper than
            # envelope.VALUE_DEPTH_MAX never opens a commitment, whichever node decodes it.
            return False
