"""Hashing and proofs of the state tree (the versioned sparse Merkle tree of `execution/jmt.py`),
and the answer a node gives to a proven state read.

The tree is 16-ary over the nibbles of a key's hash (64 nibbles of a 32-byte digest). Four
hashes, each under its own domain tag, so that no input of one kind is ever an input of another:

    key hash       H(KEY_DOMAIN || key)                  the key's path through the tree
    value hash     H(VALUE_DOMAIN || value)
    leaf hash      H(LEAF_DOMAIN || key hash || value hash)
    internal hash  H(INTERNAL_DOMAIN || child 0 || ... || child 15)
    placeholder    H(EMPTY_DOMAIN)                       an empty subtree; the empty tree's root

A subtree that holds one leaf is that leaf, wherever it sits: the tree's shape depends only on
its set of keys (an internal node at a path exists exactly when two or more keys share that
path), so the same (key, value) set has the same root however and in whatever batches it was
written.

A `SparseMerkleProof` walks from the root down the key's path: for each internal node passed,
a 16-bit bitmap of its non-empty children other than the one on the path and their hashes, in
nibble order (empty children are the placeholder and are left out). It ends in one of three
ways: the key's own leaf (inclusion), another leaf sitting on the key's path (absence: no
other key can live below a single leaf), or an empty child on the path (absence).

A `StateAnswer` is what a node answers to a proven read: the height, the full state key, the
raw stored value (None: absent), the proof and the state root of that height. It shows the
value under that root only; a client checks the root against the chain (a committed block's
state root) itself. Reads at a height the node no longer keeps (or does not yet have) fail
with `HeightUnavailableError`.

Lives in `types/` so that clients (which import only `crypto` and `types`) verify proofs with
the very code the node proves with. Owns the hash domains, the proof's encoding,
`verify_proof` and `StateAnswer`. Must never trust a proof's shape: `verify_proof` returns
False for anything malformed, never raises, and reads nothing but its arguments (a light
client runs it with the root alone).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from consortia.crypto import Suite
from consortia.errors import ConsortiaError
from consortia.types.primitives import U64

KEY_DOMAIN: Final = b"consortia/jmt-key/v1\x00"
VALUE_DOMAIN: Final = b"consortia/jmt-value/v1\x00"
LEAF_DOMAIN: Final = b"consortia/jmt-leaf/v1\x00"
INTERNAL_DOMAIN: Final = b"consortia/jmt-internal/v1\x00"
EMPTY_DOMAIN: Final = b"consortia/jmt-empty/v1\x00"

HASH_SIZE: Final = 32
RADIX: Final = 16
# A path is the hex of a key hash: one character per nibble, 64 in all.
PATH_LENGTH: Final = 2 * HASH_SIZE
HEX: Final = "0123456789abcdef"
NIBBLE: Final = {character: index for index, character in enumerate(HEX)}
BITMAP_MAX: Final = (1 << RADIX) - 1

# How many heights of state history a node keeps (reads and proofs at a past height), by
# default and at least and at most: a node's `state_history_heights` setting.
STATE_HISTORY_HEIGHTS_DEFAULT: Final = 10_000
STATE_HISTORY_HEIGHTS_MIN: Final = 16
STATE_HISTORY_HEIGHTS_MAX: Final = 1_000_000

# Bounds of a state key and a stored value (the engine's limits, `execution/values.py`, are
# within them).
STATE_KEY_SIZE_MAX: Final = 1024
STATE_VALUE_SIZE_MAX: Final = 1024 * 1024

_Hash = Annotated[bytes, Meta(min_length=HASH_SIZE, max_length=HASH_SIZE)]


def state_key(contract: str, key: str) -> bytes:
    """Where `key` of `contract`'s namespace is stored: "<contract>/<key>" (the one form of
    a state key, shared by the engine and by clients that check proofs; no length check)."""
    return f"{contract}/{key}".encode()


def split_state_key(full_key: bytes) -> tuple[str, str]:
    """(contract, key) of a full state key: the inverse of `state_key` for a contract name
    without "/" (every contract's), the first "/" separating the two; a key may hold more."""
    contract, _, key = full_key.decode().partition("/")
    return contract, key


class HeightUnavailableError(ConsortiaError):
    """A read or proof at a height whose state is not kept: pruned (older than the node's
    retention), not yet committed, or from before the state the node holds starts."""

    code = "height_unavailable"


_Bitmap = Annotated[int, Meta(ge=0, le=BITMAP_MAX)]


class ProofLeaf(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The leaf a proof's path ends in: whose key hash, and its value's hash."""

    key_hash: _Hash
    value_hash: _Hash


class SparseMerkleProof(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="smt_proof"
):
    """The siblings along a key's path, root first, and the leaf the path ends in (if any).

    `bitmaps[level]` says which of the 16 children of the internal node at that level, other
    than the one on the path, are non-empty; `siblings` holds their hashes, level by level,
    in nibble order. No placeholder is ever listed, so each proof has one encoding.
    """

    leaf: ProofLeaf | None
    bitmaps: Annotated[list[_Bitmap], Meta(max_length=PATH_LENGTH)]
    siblings: Annotated[list[_Hash], Meta(max_length=PATH_LENGTH * (RADIX - 1))]


class StateAnswer(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="state_answer"
):
    """A proven state read: `key` (the full state key, "<contract>/<key>") holds `value` (the
    raw stored bytes; None: absent) at `height`, whose state root is `root`."""

    height: U64
    key: Annotated[bytes, Meta(max_length=STATE_KEY_SIZE_MAX)]
    value: Annotated[bytes, Meta(max_length=STATE_VALUE_SIZE_MAX)] | None
    proof: SparseMerkleProof
    root: _Hash


def verify_answer(suite: Suite, answer: StateAnswer) -> bool:
    """True when the answer's proof shows its value (or absence) under its own root. Whether
    that root is the chain's at `answer.height` is for the caller to check."""
    return verify_proof(suite, answer.root, answer.key, answer.value, answer.proof)


def key_hash(suite: Suite, key: bytes) -> bytes:
    return suite.hash(KEY_DOMAIN + key)


def value_hash(suite: Suite, value: bytes) -> bytes:
    return suite.hash(VALUE_DOMAIN + value)


def leaf_hash(suite: Suite, key_digest: bytes, value_digest: bytes) -> bytes:
    return suite.hash(LEAF_DOMAIN + key_digest + value_digest)


def placeholder(suite: Suite) -> bytes:
    """The hash of an empty subtree, and so the root of the empty tree."""
    return suite.hash(EMPTY_DOMAIN)


def internal_hash(suite: Suite, slots: list[bytes]) -> bytes:
    """The hash of an internal node from its 16 children's hashes (the placeholder for each
    empty one), in nibble order."""
    assert len(slots) == RADIX
    return suite.hash(INTERNAL_DOMAIN + b"".join(slots))


def verify_proof(
    suite: Suite, root: bytes, key: bytes, value: bytes | None, proof: SparseMerkleProof
) -> bool:
    """True when `proof` shows that `key` holds `value` under `root` (None: that `key` is
    absent). False for any other proof, a malformed one included."""
    if not isinstance(proof, SparseMerkleProof) or len(proof.bitmaps) > PATH_LENGTH:
        return False
    digest = key_hash(suite, key)
    path = digest.hex()
    depth = len(proof.bitmaps)
    empty = placeholder(suite)
    counts = [
        _sibling_count(bitmap, NIBBLE[path[level]]) for level, bitmap in enumerate(proof.bitmaps)
    ]
    if -1 in counts or sum(counts) != len(proof.siblings):
        return False
    if any(len(sibling) != HASH_SIZE or sibling == empty for sibling in proof.siblings):
        return False
    current = _bottom(suite, digest, value, leaf=proof.leaf, depth=depth, empty=empty)
    if current is None:
        return False
    end = len(proof.siblings)
    for level in reversed(range(depth)):
        nibble = NIBBLE[path[level]]
        start = end - counts[level]
        bitmap = proof.bitmaps[level]
        below = iter(proof.siblings[start:end])
        slots = [next(below) if bitmap >> index & 1 else empty for index in range(RADIX)]
        slots[nibble] = current
        current = internal_hash(suite, slots)
        end = start
    return current == root


def _sibling_count(bitmap: int, nibble: int) -> int:
    """How many siblings a level lists; -1 when its bitmap is malformed for this path."""
    if not 0 <= bitmap <= BITMAP_MAX or bitmap >> nibble & 1:
        return -1
    return bitmap.bit_count()


def _bottom(
    suite: Suite,
    digest: bytes,
    value: bytes | None,
    *,
    leaf: ProofLeaf | None,
    depth: int,
    empty: bytes,
) -> bytes | None:
    """The hash the path ends in, or None when the proof's end cannot show the claim."""
    if leaf is None:
        # An empty child on the path (or the empty tree): only absence is shown.
        return empty if value is None else None
    if len(leaf.key_hash) != HASH_SIZE or len(leaf.value_hash) != HASH_SIZE:
        return None
    if value is not None:
        if leaf.key_hash != digest or leaf.value_hash != value_hash(suite, value):
            return None
    elif leaf.key_hash == digest or leaf.key_hash.hex()[:depth] != digest.hex()[:depth]:
        # Absence by another leaf needs a leaf that sits on this key's path. The root binds
        # the leaf's place already (a leaf is only ever stored on its own path); checking the
        # prefix as well refuses such a proof before any hashing.
        return None
    return leaf_hash(suite, leaf.key_hash, leaf.value_hash)
