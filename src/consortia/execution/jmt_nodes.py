"""The nodes of the versioned sparse Merkle tree (`jmt.py`): their keys, their one encoding,
what a version's `apply` hands back, and a node store in memory.

A node is stored under its `NodeKey`: the version that wrote it and its nibble path (hex, one
character per nibble). `NodeKey.to_bytes` orders keys by version, so a store can range over
them. Three kinds of node, each a tagged msgspec array with exactly one encoding:

    Empty     the root of a version whose tree holds no key
    Internal  a bitmap of its non-empty children, their versions and their hashes
    Leaf      a key and its value (the hashes are recomputed when a leaf is decoded)

Owns the node types, their encoding and `MemoryNodeStore`. Must never touch the disk, a clock
or randomness; a durable store (the node's) implements the same reader and persists each
`TreeUpdate` with its block.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final, NamedTuple

import msgspec
from msgspec import Meta

from consortia.crypto import Suite
from consortia.errors import ConsortiaError, DecodeError
from consortia.execution.jmt_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    PATH_LENGTH,
    RADIX,
    internal_hash,
    key_hash,
    leaf_hash,
    placeholder,
    value_hash,
)
from consortia.types.encoding import encode
from consortia.types.primitives import U64

_VERSION_SIZE: Final = 8


class VersionUnavailableError(ConsortiaError):
    """A read or proof at a version this tree does not hold: pruned, not yet written, or
    from before the version the tree started at."""

    code = "height_unavailable"


class NodeKey(NamedTuple):
    """Where a node is stored: the version that wrote it and its path (hex nibbles)."""

    version: int
    path: str

    def to_bytes(self) -> bytes:
        """Version (8 bytes, big-endian), path length, packed nibbles: ordered by version."""
        padded = self.path + "0" if len(self.path) % 2 else self.path
        return (
            self.version.to_bytes(_VERSION_SIZE, "big")
            + bytes([len(self.path)])
            + (bytes.fromhex(padded))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeKey:
        if len(data) < _VERSION_SIZE + 1 or data[_VERSION_SIZE] > PATH_LENGTH:
            raise DecodeError("not a node key")
        length = data[_VERSION_SIZE]
        packed = data[_VERSION_SIZE + 1 :]
        path = packed.hex()
        if len(packed) != (length + 1) // 2 or path[length:] not in ("", "0"):
            raise DecodeError("not a node key")
        return cls(int.from_bytes(data[:_VERSION_SIZE], "big"), path[:length])


NodeReader = Callable[[NodeKey], bytes | None]


# A reference to a child node: the version that wrote it and its hash.
Child = tuple[int, bytes]


class Leaf:
    __slots__ = ("hash", "key", "key_hash", "path", "value", "value_hash")

    def __init__(self, suite: Suite, key: bytes, value: bytes, digest: bytes | None = None) -> None:
        self.key = key
        self.value = value
        self.key_hash = key_hash(suite, key) if digest is None else digest
        self.path = self.key_hash.hex()
        self.value_hash = value_hash(suite, value)
        self.hash = leaf_hash(suite, self.key_hash, self.value_hash)


class Internal:
    """Its non-empty children, nibble -> (version, hash), in nibble order; the bitmap of
    their nibbles; its hash."""

    __slots__ = ("bitmap", "children", "hash")

    def __init__(self, children: dict[int, Child], bitmap: int, hash_: bytes) -> None:
        assert children, "an internal node has children"
        self.children = children
        self.bitmap = bitmap
        self.hash = hash_

    def siblings(self, nibble: int) -> list[bytes]:
        """The hashes of the non-empty children other than `nibble`, in nibble order."""
        return [child[1] for other, child in self.children.items() if other != nibble]


class Empty:
    """The root node of a version whose tree holds no key."""

    __slots__ = ()


EMPTY: Final = Empty()
Node = Leaf | Internal | Empty


class _EmptyRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag=0):
    pass


class _InternalRecord(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag=1
):
    bitmap: Annotated[int, Meta(ge=1, le=BITMAP_MAX)]
    versions: Annotated[list[U64], Meta(min_length=1, max_length=RADIX)]
    hashes: Annotated[bytes, Meta(min_length=HASH_SIZE, max_length=RADIX * HASH_SIZE)]


class _LeafRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag=2):
    key: bytes
    value: bytes


_Record = _EmptyRecord | _InternalRecord | _LeafRecord


# The nibbles of the set bits of each byte, lowest first: a bitmap's children in order.
_BITS: Final = tuple(tuple(bit for bit in range(8) if byte >> bit & 1) for byte in range(256))
_HIGH_BITS: Final = tuple(tuple(bit + 8 for bit in bits) for bits in _BITS)
_decoder: Final = msgspec.msgpack.Decoder(_Record)
# Splitting n concatenated hashes, for n of 0 to 16.
_SPLITS: Final = tuple(struct.Struct(f"{HASH_SIZE}s" * count) for count in range(RADIX + 1))


def encode_node(node: Node) -> bytes:
    if isinstance(node, Leaf):
        return encode(_LeafRecord(node.key, node.value))
    if isinstance(node, Internal):
        children = node.children.values()
        versions = [child[0] for child in children]
        hashes = b"".join([child[1] for child in children])
        return encode(_InternalRecord(node.bitmap, versions, hashes))
    return encode(_EmptyRecord())


def decode_node(suite: Suite, data: bytes, empty: bytes | None = None) -> Node:
    """The node stored as `data`, its hash recomputed (`empty`: the suite's placeholder, to
    spare hashing it); DecodeError for anything else, a second encoding of a node included."""
    try:
        record = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise DecodeError(f"not a state tree node: {error}") from None
    # Re-encoding is cheaper than the decode: every node has one valid encoding.
    if encode(record) != data:
        raise DecodeError("not the canonical encoding of a state tree node")
    if isinstance(record, _LeafRecord):
        return Leaf(suite, record.key, record.value)
    if isinstance(record, _InternalRecord):
        bitmap, versions, hashes = record.bitmap, record.versions, record.hashes
        if len(versions) != bitmap.bit_count() or len(hashes) != len(versions) * HASH_SIZE:
            raise DecodeError("an internal node's bitmap, versions and hashes disagree")
        nibbles = _BITS[bitmap & 0xFF] + _HIGH_BITS[bitmap >> 8]
        digests = _SPLITS[len(versions)].unpack(hashes)
        slots = [placeholder(suite) if empty is None else empty] * RADIX
        for nibble, digest in zip(nibbles, digests, strict=True):
            slots[nibble] = digest
        children = dict(zip(nibbles, zip(versions, digests, strict=True), strict=True))
        return Internal(children, bitmap, internal_hash(suite, slots))
    return EMPTY


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    """What `apply` wrote: persist `nodes` and the `stale` list (keyed by `version`, for
    pruning) atomically with the block."""

    version: int
    root: bytes
    nodes: dict[NodeKey, bytes]
    # Nodes of earlier versions that no tree from `version` on reaches.
    stale: list[NodeKey]


class MemoryNodeStore:
    """Nodes in a dict: the reader and the writer of tests and the simulator. Keeps each
    version's stale list so `prune` can delete what no retained version reaches."""

    def __init__(self) -> None:
        self.nodes: dict[NodeKey, bytes] = {}
        self._stale: dict[int, list[NodeKey]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def read(self, key: NodeKey) -> bytes | None:
        return self.nodes.get(key)

    def write(self, update: TreeUpdate) -> None:
        self.nodes.update(update.nodes)
        if update.stale:
            self._stale[update.version] = list(update.stale)

    def prune(self, oldest_version: int) -> int:
        """Delete the nodes stale at `oldest_version` or before: no version from
        `oldest_version` on reaches them. Returns how many were deleted."""
        deleted = 0
        for since in sorted(v for v in self._stale if v <= oldest_version):
            for key in self._stale.pop(since):
                del self.nodes[key]
                deleted += 1
        return deleted
