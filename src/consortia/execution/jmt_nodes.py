"""The nodes of the versioned sparse Merkle tree (`jmt.py`): their keys, their one encoding,
what a version's `apply` hands back, and a node store in memory.

A node is stored under its `NodeKey`: the version that wrote it and its nibble path (hex, one
character per nibble). `NodeKey.to_bytes` orders keys by version, so a store can range over
them. Three kinds of node, each a tagged msgspec array with exactly one encoding:

    Empty     the root of a version whose tree holds no key
    Internal  a bitmap of its non-empty children, a bitmap of those that are leaves, their
              versions and their hashes
    Leaf      a key and its value (the hashes are recomputed when a leaf is decoded)

An internal node knows which children are leaves so that a write replacing a key's leaf needs
neither to read nor to decode the leaf it replaces. In memory the tree holds an internal node
as a `Branch`: one flat tuple of what it hashes (the internal domain tag and its 16 child
hashes, the placeholder for an empty child, in one bytes object: rewriting a child is two
slices, and hashing the node is one call), the two bitmaps, its hash, the version that wrote it
and its 16 child versions. A tuple of atoms is dropped from the garbage collector's lists
after its first collection, so a cache of hundreds of thousands of them costs the collector
nothing; one object per node, not two or seventeen, is what each write allocates and what a
rewrite touches (`Internal`, the same node as an object, is what `decode_node` hands callers
outside the tree).

`hasher(suite)` is the suite's hash as a hashlib-style constructor (`new(data).digest()`):
hashlib's own SHA-256 or SM3 when the suite's hash is that one (checked on probes), the
suite's `hash` otherwise. The tree hashes through it, sparing a Python call per hash.

Owns the node types, their encoding and `MemoryNodeStore`. Must never touch the disk, a clock
or randomness; a durable store (the node's) implements the same reader and persists each
`TreeUpdate` with its block.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Annotated, Any, Final, NamedTuple, Protocol

import msgspec
from msgspec import Meta

from consortia.crypto import Suite
from consortia.errors import ConsortiaError, DecodeError
from consortia.types.encoding import encode
from consortia.types.primitives import U64
from consortia.types.state_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    LEAF_DOMAIN,
    PATH_LENGTH,
    RADIX,
    VALUE_DOMAIN,
    placeholder,
)

_VERSION_SIZE: Final = 8


class StateCorruptError(ConsortiaError):
    """The node store holds a tree node that is not what its parent (or the stored state
    root) names: the store is damaged or was altered. The node must stop."""

    code = "state_corrupt"


class NodeKey(NamedTuple):
    """Where a node is stored: the version that wrote it and its path (hex nibbles)."""

    version: int
    path: str

    def to_bytes(self) -> bytes:
        """Version (8 bytes, big-endian), path length, packed nibbles: ordered by version."""
        version, path = self
        length = len(path)
        return (
            version.to_bytes(_VERSION_SIZE, "big")
            + _LENGTHS[length]
            + (bytes.fromhex(path + "0") if length & 1 else bytes.fromhex(path))
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


_LENGTHS: Final = tuple(bytes((length,)) for length in range(PATH_LENGTH + 1))


def python_keys_as_bytes(keys: Iterable[NodeKey]) -> list[bytes]:
    """`[key.to_bytes() for key in keys]`, faster: a commit hands the store thousands of keys
    of a few versions and short paths, so each version's prefix is made once a call and each
    path's packed form is remembered (`_PACKED`, emptied when full). `keys_as_bytes` is
    `_jmt_native.keys_bytes` where the package's C module is built, this otherwise."""
    prefixes: dict[int, bytes] = {}
    packed = _PACKED
    out: list[bytes] = []
    append = out.append
    for version, path in keys:
        prefix = prefixes.get(version)
        if prefix is None:
            prefix = prefixes[version] = version.to_bytes(_VERSION_SIZE, "big")
        tail = packed.get(path)
        if tail is None:
            if len(packed) >= _PACKED_MAX:
                packed.clear()
            length = len(path)
            tail = packed[path] = _LENGTHS[length] + bytes.fromhex(
                path + "0" if length & 1 else path
            )
        append(prefix + tail)
    return out


try:
    from consortia.execution import _jmt_native
except ImportError:  # pragma: no cover - the package's install builds it
    _jmt_native = None  # type: ignore[assignment]
# A commit's node keys as the store keys them: in C where built (a state of hundreds of
# thousands of keys writes paths no bounded memo keeps).
keys_as_bytes: Final[Callable[[Iterable[NodeKey]], list[bytes]]] = (
    python_keys_as_bytes if _jmt_native is None else _jmt_native.keys_bytes
)

# Paths' packed forms (length byte and nibbles), for `keys_as_bytes`: bounded, and only ever
# a function of the path, so sharing it between trees is safe.
_PACKED: Final[dict[str, bytes]] = {}
_PACKED_MAX: Final = 1 << 16
NodeReader = Callable[[NodeKey], bytes | None]
# Many nodes at once, in the order asked (None where missing): a store answers them from one
# read transaction, for walks over a whole stored tree.
NodesReader = Callable[[list[NodeKey]], list[bytes | None]]


# A reference to a child node: the version that wrote it and its hash.
Child = tuple[int, bytes]
# An internal node as the tree holds it, one flat tuple: INTERNAL_DOMAIN and its 16 child
# hashes (one bytes object), the bitmap of its non-empty children, the bitmap of the leaves
# among them, its hash (of the first field), the version that wrote it, then its 16 child
# versions (0 where empty). See `Internal`.
Branch = tuple[Any, ...]
HASHED, BITMAP, LEAVES, HASH, VERSION = range(5)
# Where child versions start in a branch.
CHILD: Final = 5
# Where child `nibble`'s hash starts in a branch's first field.
DOMAIN_SIZE: Final = len(INTERNAL_DOMAIN)
SLOTS: Final = tuple(DOMAIN_SIZE + HASH_SIZE * nibble for nibble in range(RADIX))
_SPLIT16: Final = struct.Struct(f"{DOMAIN_SIZE}x" + f"{HASH_SIZE}s" * RADIX)
# A branch's first field split into its 16 child hashes.
split_hashes: Final[Callable[[bytes], tuple[bytes, ...]]] = _SPLIT16.unpack


def child_hash(hashed: bytes, nibble: int) -> bytes:
    """Child `nibble`'s hash, out of a branch's first field."""
    start = SLOTS[nibble]
    return hashed[start : start + HASH_SIZE]


class HashObject(Protocol):
    def digest(self) -> bytes: ...


Hasher = Callable[[bytes], HashObject]
# hashlib's constructor of each suite's hash, by suite name.
_HASHLIB_NAMES: Final = {"intl": "sha256", "gm": "sm3"}
_PROBES: Final = (b"", b"consortia/jmt-probe\x00", bytes(range(256)) * 3)


class _SuiteDigest:
    """The suite's hash behind hashlib's interface (for a suite hashlib does not offer)."""

    __slots__ = ("_digest",)
    suite: Suite

    def __init__(self, data: bytes) -> None:
        self._digest = self.suite.hash(data)

    def digest(self) -> bytes:
        return self._digest


@functools.lru_cache(maxsize=16)
def hasher(suite: Suite) -> Hasher:
    """`suite.hash` as a hashlib-style constructor: `hasher(suite)(data).digest() ==
    suite.hash(data)`. hashlib's own constructor where it gives the suite's digests on every
    probe, the suite's method otherwise."""
    name = _HASHLIB_NAMES.get(suite.name)
    if name is not None and name in hashlib.algorithms_available:
        new: Hasher = hashlib.sha256 if name == "sha256" else functools.partial(hashlib.new, name)
        if all(new(probe).digest() == suite.hash(probe) for probe in _PROBES):
            return new
    return type("SuiteDigest", (_SuiteDigest,), {"__slots__": (), "suite": suite})


class Leaf:
    """A key and its value, with the key's hash (in hex: its path), the value's hash and the
    leaf's hash."""

    __slots__ = ("hash", "key", "key_hash", "path", "value", "value_hash")

    def __init__(self, suite: Suite, key: bytes, value: bytes, digest: bytes | None = None) -> None:
        """`digest`: the key's hash, when the caller has it already."""
        new = hasher(suite)
        self.key = key
        self.value = value
        self.key_hash = new(KEY_DOMAIN + key).digest() if digest is None else digest
        self.path = self.key_hash.hex()
        self.value_hash = new(VALUE_DOMAIN + value).digest()
        self.hash = new(LEAF_DOMAIN + self.key_hash + self.value_hash).digest()


class Internal:
    """Its 16 child slots: `hashes` (the placeholder where a child is empty) and `versions`
    (0 where empty); `bitmap` of the non-empty children, `leaves` of those that are leaves;
    its hash. Immutable (tuples of atoms, which the garbage collector stops tracking)."""

    __slots__ = ("bitmap", "hash", "hashes", "leaves", "versions")

    def __init__(
        self,
        hashes: tuple[bytes, ...],
        versions: tuple[int, ...],
        bitmap: int,
        leaves: int,
        hash_: bytes,
    ) -> None:
        assert bitmap, "an internal node has children"
        self.hashes = hashes
        self.versions = versions
        self.bitmap = bitmap
        self.leaves = leaves
        self.hash = hash_

    @classmethod
    def of(cls, branch: Branch) -> Internal:
        hashed, bitmap, leaves, digest = branch[: CHILD - 1]
        return cls(_SPLIT16.unpack(hashed), branch[CHILD:], bitmap, leaves, digest)

    def branch(self, version: int = 0) -> Branch:
        """This node as the tree holds it, written at `version`."""
        hashed = INTERNAL_DOMAIN + b"".join(self.hashes)
        return (hashed, self.bitmap, self.leaves, self.hash, version, *self.versions)

    @property
    def children(self) -> dict[int, Child]:
        """The non-empty children, nibble -> (version, hash), in nibble order (not hot)."""
        return {n: (self.versions[n], self.hashes[n]) for n in nibbles(self.bitmap)}

    def siblings(self, nibble: int) -> list[bytes]:
        """The hashes of the non-empty children other than `nibble`, in nibble order."""
        hashes = self.hashes
        return [hashes[n] for n in nibbles(self.bitmap & ~(1 << nibble))]


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
    leaves: Annotated[int, Meta(ge=0, le=BITMAP_MAX)]
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


def nibbles(bitmap: int) -> tuple[int, ...]:
    """The nibbles set in a 16-bit bitmap, lowest first."""
    return _BITS[bitmap & 0xFF] + _HIGH_BITS[bitmap >> 8]


# The tags of the records, and the encoder behind `encode`: a record's fields as a tuple
# headed by its tag are its encoding (an array-like tagged struct is exactly that array), which
# spares building the record on the hot path. `decode_node` checks both agree.
LEAF_TAG: Final = 2
_LEAF_TAG: Final = LEAF_TAG
INTERNAL_TAG: Final = 1
_INTERNAL_TAG: Final = INTERNAL_TAG
_raw_encode: Final = msgspec.msgpack.Encoder(order="deterministic").encode
# A record's fields, headed by its tag, to its encoding (see `encode_branch`).
encode_record: Final[Callable[[tuple[Any, ...]], bytes]] = _raw_encode
_Pick = Callable[[tuple[Any, ...]], tuple[Any, ...]]
# Per bitmap, what picks the versions of its children out of a branch, and their hashes out of
# its 16 (filled as bitmaps are met).
_PICKERS: dict[int, tuple[_Pick, _Pick]] = {}


def _pickers(bitmap: int) -> tuple[_Pick, _Pick]:
    present = nibbles(bitmap)
    if len(present) == 1:
        (only,) = present
        return (lambda node: (node[CHILD + only],)), (lambda hashes: (hashes[only],))
    return itemgetter(*(CHILD + n for n in present)), itemgetter(*present)


def encode_leaf(key: bytes, value: bytes) -> bytes:
    return _raw_encode((_LEAF_TAG, key, value))


def encode_internal(node: Internal) -> bytes:
    return encode_branch(node.branch())


def encode_branch(node: Branch, hashes: list[bytes] | None = None) -> bytes:
    """An internal node's encoding (`hashes`: its 16 child hashes, when the caller has them
    apart)."""
    bitmap = node[BITMAP]
    if bitmap == BITMAP_MAX:
        versions = node[CHILD:]
        packed = node[HASHED][DOMAIN_SIZE:]
    else:
        pickers = _PICKERS.get(bitmap)
        if pickers is None:
            pickers = _PICKERS[bitmap] = _pickers(bitmap)
        versions = pickers[0](node)
        packed = b"".join(
            pickers[1](_SPLIT16.unpack(node[HASHED]) if hashes is None else hashes)  # type: ignore[arg-type]
        )
    return _raw_encode((_INTERNAL_TAG, bitmap, node[LEAVES], versions, packed))


def encode_node(node: Node | Branch) -> bytes:
    if isinstance(node, Leaf):
        return encode_leaf(node.key, node.value)
    if isinstance(node, Internal):
        return encode_internal(node)
    if isinstance(node, tuple):
        return encode_branch(node)
    return encode(_EmptyRecord())


def decode_node(suite: Suite, data: bytes, empty: bytes | None = None) -> Node:
    """The node stored as `data`, its hash recomputed (`empty`: the suite's placeholder, to
    spare hashing it); DecodeError for anything else, a second encoding of a node included."""
    node = decode_stored(
        hasher(suite), suite, data, placeholder(suite) if empty is None else empty, 0
    )
    return Internal.of(node) if isinstance(node, tuple) else node


def decode_stored(
    new: Hasher, suite: Suite, data: bytes, empty: bytes, version: int
) -> Leaf | Branch | Empty:
    """`decode_node` as the tree holds nodes (an internal node as a `Branch` written at
    `version`), hashing with `new` (`hasher(suite)`) and `empty` the suite's placeholder."""
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
        bitmap, versions, packed = record.bitmap, record.versions, record.hashes
        if len(versions) != bitmap.bit_count() or len(packed) != len(versions) * HASH_SIZE:
            raise DecodeError("an internal node's bitmap, versions and hashes disagree")
        if record.leaves & ~bitmap:
            raise DecodeError("an internal node marks an empty child as a leaf")
        hashes = [empty] * RADIX
        slots = [0] * RADIX
        for nibble, child_version, digest in zip(
            nibbles(bitmap), versions, _SPLITS[len(versions)].unpack(packed), strict=True
        ):
            hashes[nibble] = digest
            slots[nibble] = child_version
        return make_branch(new, hashes, slots, (bitmap, record.leaves), version)
    return EMPTY


def checked_entry(
    new: Hasher,
    empty: bytes,
    data: bytes,
    expected: bytes,
    item: Callable[[bytes, bytes, bool | None], tuple[str, bytes | None, bytes, Any, Any]],
) -> tuple[bytes, bytes, str] | list[tuple[int, int, bytes]]:
    """A stored node below the root as a walk over the stored tree needs it, checked against
    `expected` (the hash its parent names) without building the node: a leaf's (key, value,
    path), or an internal node's children as (nibble, version, hash). DecodeError for a node
    that does not decode or does not hash to `expected` (`new`: `hasher(suite)`, `empty`:
    the suite's placeholder, `item`: the tree's leaf hashing, `TreeWriter._item`, which gives
    a key's path and its leaf's hash)."""
    try:
        record = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise DecodeError(f"not a state tree node: {error}") from None
    if isinstance(record, _LeafRecord):
        path, leaf_hash, _, _, _ = item(record.key, record.value, None)
        if leaf_hash != expected:
            raise DecodeError("not the leaf its parent names")
        return record.key, record.value, path
    if isinstance(record, _InternalRecord):
        bitmap, versions, packed = record.bitmap, record.versions, record.hashes
        if len(versions) != bitmap.bit_count() or len(packed) != len(versions) * HASH_SIZE:
            raise DecodeError("an internal node's bitmap, versions and hashes disagree")
        split = _SPLITS[len(versions)].unpack(packed)
        children = list(zip(nibbles(bitmap), versions, split, strict=True))
        hashes = [empty] * RADIX
        for nibble, _, digest in children:
            hashes[nibble] = digest
        if new(INTERNAL_DOMAIN + b"".join(hashes)).digest() != expected:
            raise DecodeError("not the internal node its parent names")
        return children
    raise DecodeError("an empty node below the root")


def make_branch(
    new: Hasher, hashes: list[bytes], versions: list[int], bitmaps: tuple[int, int], version: int
) -> Branch:
    """An internal node over its 16 slots (`bitmaps`: of its children, of its leaves), hashed
    (`new`: `hasher(suite)`), written at `version`."""
    bitmap, leaves = bitmaps
    assert bitmap, "an internal node has children"
    hashed = INTERNAL_DOMAIN + b"".join(hashes)
    return (hashed, bitmap, leaves, new(hashed).digest(), version, *versions)


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
        # Version -> the nodes it made stale, in the order the versions were written.
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
        stale = self._stale
        while stale:
            since = next(iter(stale))
            if since > oldest_version:
                break
            for key in stale.pop(since):
                del self.nodes[key]
                deleted += 1
        return deleted
