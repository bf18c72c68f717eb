"""Committed state as a versioned 16-ary sparse Merkle tree (a Jellyfish Merkle tree).

Each key's path is the 64 nibbles of its hash (`jmt_proof.key_hash`). Leaves hold the key and
its value; an internal node holds up to 16 children, each referenced by hash and by the version
that wrote it. Every node is immutable and stored once under its `NodeKey` (the version that
wrote it, the nibble path where it sits), so the tree of every version is still there, sharing
whatever it did not change. A subtree holding one leaf is that leaf, so a path is only as deep
as needed to tell its key from the others (about log16 of the number of keys).

Values live in their leaves: `get(key, version)` walks from that version's root to the leaf,
so reads at any retained version cost the same as reads at the latest, nothing is kept beside
the nodes, and pruning a version's nodes prunes its values with them.

Every version has a root node at `NodeKey(version, "")` (the empty tree's is `Empty`), so a
version exists exactly when its root node does. `apply(version, writes)` writes a version: it
returns a `TreeUpdate` with the new root hash, the new nodes (NodeKey -> bytes) and the nodes
this version made stale. The caller persists the update atomically with its block and, to
prune, deletes the nodes that became stale at or before the oldest version it keeps (every
version from there on reaches none of them), then calls `retain_from` so the tree refuses
older versions clearly (`VersionUnavailableError`). `MemoryNodeStore` does this in a dict.

Owns the tree's shape, its versions and the cache of decoded nodes (their encoding is
`jmt_nodes.py`'s, proofs and hashing `jmt_proof.py`'s). Must never touch
the disk, a clock or randomness: nodes it does not hold come through the injected reader, and
what it writes leaves as a `TreeUpdate` for the caller to store. The reader must return, before
the next `apply` or read, every node of the updates handed out (apply, then persist).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import Final

from consortia.crypto import Suite
from consortia.execution.jmt_nodes import (
    EMPTY,
    Child,
    Empty,
    Internal,
    Leaf,
    MemoryNodeStore,
    Node,
    NodeKey,
    NodeReader,
    TreeUpdate,
    VersionUnavailableError,
    decode_node,
    encode_node,
)
from consortia.execution.jmt_proof import (
    HASH_SIZE,
    NIBBLE,
    PATH_LENGTH,
    RADIX,
    ProofLeaf,
    SparseMerkleProof,
    internal_hash,
    key_hash,
    placeholder,
    verify_proof,
)

__all__ = [
    "CACHE_NODES_DEFAULT",
    "JellyfishTree",
    "MemoryNodeStore",
    "NodeKey",
    "NodeReader",
    "SparseMerkleProof",
    "TreeUpdate",
    "VersionUnavailableError",
    "verify_proof",
]

# Decoded nodes kept in memory: the upper levels of a tree of millions of keys, with room left
# for the leaves a block touches.
CACHE_NODES_DEFAULT: Final = 65_536
_HEX: Final = "0123456789abcdef"
_first = itemgetter(0)


class _Placed:
    """A subtree built by `apply`: its top node, and where it is stored (None for a leaf not
    yet placed: a leaf's place is fixed only when its parent is)."""

    __slots__ = ("key", "node")

    def __init__(self, node: Leaf | Internal, key: NodeKey | None) -> None:
        self.node = node
        self.key = key


class JellyfishTree:
    def __init__(
        self,
        suite: Suite,
        reader: NodeReader,
        *,
        version: int | None = None,
        oldest_version: int = 0,
        cache_nodes_max: int = CACHE_NODES_DEFAULT,
    ) -> None:
        """A tree over the nodes `reader` returns. `version` is the latest version written
        (None: nothing yet); `oldest_version` the oldest not pruned."""
        assert suite.hash_size == HASH_SIZE
        assert cache_nodes_max >= 1
        assert version is None or 0 <= oldest_version <= version
        self._suite = suite
        self._reader = reader
        self._empty = placeholder(suite)
        self._version = version
        self._oldest = oldest_version
        self._cache: OrderedDict[NodeKey, Node] = OrderedDict()
        self._cache_max = cache_nodes_max
        self.cache_hits = 0
        self.cache_misses = 0
        # The update `apply` is building.
        self._nodes: dict[NodeKey, bytes] = {}
        self._stale: list[NodeKey] = []

    @property
    def version(self) -> int | None:
        return self._version

    @property
    def oldest_version(self) -> int:
        return self._oldest

    # ------------------------------------------------------------------ reads

    def root_hash(self, version: int | None = None) -> bytes:
        """The root at `version` (the latest when None)."""
        return self._hash(self._root(version))

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        """The value of `key` at `version` (the latest when None); None when absent."""
        path = key_hash(self._suite, key).hex()
        node = self._root(version)
        depth = 0
        while isinstance(node, Internal):
            child = node.children.get(NIBBLE[path[depth]])
            if child is None:
                return None
            depth += 1
            node = self._load(NodeKey(child[0], path[:depth]))
        if isinstance(node, Leaf) and node.path == path:
            return node.value
        return None

    def prove(self, key: bytes, version: int | None = None) -> SparseMerkleProof:
        return self.get_with_proof(key, version)[1]

    def get_with_proof(
        self, key: bytes, version: int | None = None
    ) -> tuple[bytes | None, SparseMerkleProof]:
        """The value of `key` at `version` and the proof of it (of its absence when None)
        under `root_hash(version)`, in one walk."""
        path = key_hash(self._suite, key).hex()
        node = self._root(version)
        bitmaps: list[int] = []
        siblings: list[bytes] = []
        depth = 0
        while isinstance(node, Internal):
            nibble = NIBBLE[path[depth]]
            bitmaps.append(node.bitmap & ~(1 << nibble))
            siblings += node.siblings(nibble)
            child = node.children.get(nibble)
            if child is None:
                return None, SparseMerkleProof(None, bitmaps, siblings)
            depth += 1
            node = self._load(NodeKey(child[0], path[:depth]))
        if isinstance(node, Empty):
            return None, SparseMerkleProof(None, [], [])
        proof = SparseMerkleProof(ProofLeaf(node.key_hash, node.value_hash), bitmaps, siblings)
        return (node.value if node.path == path else None), proof

    def items(self, version: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in the order of the keys' hashes. Visits every
        node: for copying or checking a whole state, never on a hot path."""
        stack: list[tuple[Node, str]] = [(self._root(version), "")]
        while stack:
            node, path = stack.pop()
            if isinstance(node, Leaf):
                yield node.key, node.value
            elif isinstance(node, Internal):
                for nibble, (child_version, _) in reversed(node.children.items()):
                    child_path = path + _HEX[nibble]
                    stack.append((self._load(NodeKey(child_version, child_path)), child_path))

    # ------------------------------------------------------------------ writes

    def apply(self, version: int, writes: Mapping[bytes, bytes | None]) -> TreeUpdate:
        """Write `version`: each key to its value, None deleting it. The first version may be
        any; each later one follows the one before."""
        previous = self._version
        assert version >= 0 and (previous is None or version == previous + 1), (
            "versions are applied in order"
        )
        batch = sorted((self._item(key, value) for key, value in writes.items()), key=_first)
        self._nodes, self._stale = {}, []
        old_key = None if previous is None else NodeKey(previous, "")
        old_root = EMPTY if old_key is None else self._load(old_key)
        if isinstance(old_root, Empty):
            placed = self._build(version, "", [item for item in batch if item[1] is not None])
        else:
            assert old_key is not None
            placed = self._update(version, "", old_key, old_root, batch)
        root_key = NodeKey(version, "")
        unchanged = placed is not None and placed.key == old_key
        if old_key is not None and (isinstance(old_root, Empty) or unchanged):
            self._stale.append(old_key)
        root: Node = EMPTY if placed is None else placed.node
        if placed is None or placed.key != root_key:
            # A leaf, an unchanged root or none: this version's root node all the same.
            self._emit(root_key, root)
        update = TreeUpdate(version, self._hash(root), self._nodes, self._stale)
        self._nodes, self._stale = {}, []
        self._version = version
        return update

    def retain_from(self, version: int) -> None:
        """Versions before `version` are being pruned: refuse them from now on."""
        assert self._version is not None and self._oldest <= version <= self._version
        self._oldest = version

    def _item(self, key: bytes, value: bytes | None) -> tuple[str, Leaf | None]:
        if value is None:
            return key_hash(self._suite, key).hex(), None
        leaf = Leaf(self._suite, key, value)
        return leaf.path, leaf

    def _update(
        self,
        version: int,
        path: str,
        key: NodeKey,
        node: Leaf | Internal,
        writes: list[tuple[str, Leaf | None]],
    ) -> _Placed | None:
        """The subtree at `path` (stored at `key`) after `writes`, all under `path`."""
        if isinstance(node, Leaf):
            return self._update_leaf(version, path, key, node, writes)
        children: dict[int, Child | _Placed] | None = None
        for nibble, group in _groups(writes, len(path)):
            child = node.children.get(nibble)
            child_path = path + _HEX[nibble]
            placed: _Placed | None
            if child is None:
                placed = self._build(version, child_path, [i for i in group if i[1] is not None])
                if placed is None:
                    continue
            else:
                child_key = NodeKey(child[0], child_path)
                placed = self._update(version, child_path, child_key, self._child(child_key), group)
                if placed is not None and placed.key == child_key:
                    continue
            if children is None:
                children = dict(node.children)
            if placed is None:
                del children[nibble]
            else:
                children[nibble] = placed
        if children is None:
            return _Placed(node, key)
        self._stale.append(key)
        return self._finish(version, path, children)

    def _update_leaf(
        self,
        version: int,
        path: str,
        key: NodeKey,
        leaf: Leaf,
        writes: list[tuple[str, Leaf | None]],
    ) -> _Placed | None:
        own: Leaf | None = leaf
        others: list[tuple[str, Leaf | None]] = []
        for item in writes:
            if item[0] == leaf.path:
                own = item[1]
            elif item[1] is not None:
                others.append(item)
        if not others and own is not None and own.value == leaf.value:
            return _Placed(leaf, key)
        self._stale.append(key)
        if own is not None:
            others.append((own.path, own))
            others.sort(key=_first)
        return self._build(version, path, others)

    def _build(
        self, version: int, path: str, leaves: list[tuple[str, Leaf | None]]
    ) -> _Placed | None:
        """A subtree at `path` of `leaves` alone (no None among them)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            leaf = leaves[0][1]
            assert leaf is not None
            return _Placed(leaf, None)
        assert len(path) < PATH_LENGTH, "two leaves with one key hash"
        children: dict[int, Child | _Placed] = {}
        for nibble, group in _groups(leaves, len(path)):
            placed = self._build(version, path + _HEX[nibble], group)
            assert placed is not None
            children[nibble] = placed
        return self._finish(version, path, children)

    def _finish(
        self, version: int, path: str, children: dict[int, Child | _Placed]
    ) -> _Placed | None:
        """The node at `path` over `children`: none, a single leaf moved up, or an internal
        node written at this version."""
        if not children:
            return None
        if len(children) == 1:
            ((nibble, only),) = children.items()
            lifted = self._lift(path + _HEX[nibble], only)
            if lifted is not None:
                return lifted
        slots = [self._empty] * RADIX
        final: dict[int, Child] = {}
        bitmap = 0
        for nibble in sorted(children):
            child = children[nibble]
            if isinstance(child, _Placed):
                if child.key is None:
                    child.key = NodeKey(version, path + _HEX[nibble])
                    self._emit(child.key, child.node)
                child = (child.key.version, child.node.hash)
            final[nibble] = child
            slots[nibble] = child[1]
            bitmap |= 1 << nibble
        node = Internal(final, bitmap, internal_hash(self._suite, slots))
        key = NodeKey(version, path)
        self._emit(key, node)
        return _Placed(node, key)

    def _lift(self, child_path: str, child: Child | _Placed) -> _Placed | None:
        """An only child that is a leaf, moved up to its parent's place; None otherwise."""
        if isinstance(child, _Placed):
            if not isinstance(child.node, Leaf):
                return None
            if child.key is not None:
                self._stale.append(child.key)
            return _Placed(child.node, None)
        key = NodeKey(child[0], child_path)
        node = self._child(key)
        if not isinstance(node, Leaf):
            return None
        self._stale.append(key)
        return _Placed(node, None)

    # ------------------------------------------------------------------ nodes

    def _root(self, version: int | None) -> Node:
        latest = self._version
        if latest is None:
            raise VersionUnavailableError("the state tree holds no version yet")
        at = latest if version is None else version
        if at > latest:
            raise VersionUnavailableError(f"version {at} is after the latest, {latest}")
        if at < self._oldest:
            raise VersionUnavailableError(
                f"version {at} is before {self._oldest}, the oldest version kept (older"
                " versions are pruned)"
            )
        node = self._fetch(NodeKey(at, ""))
        if node is None:
            raise VersionUnavailableError(f"no state tree at version {at}")
        return node

    def _child(self, key: NodeKey) -> Leaf | Internal:
        node = self._load(key)
        assert not isinstance(node, Empty), f"an empty node below a root at {key}"
        return node

    def _load(self, key: NodeKey) -> Node:
        node = self._fetch(key)
        # A node a retained version reaches is never missing, unless the store is corrupt.
        assert node is not None, f"the node store lacks node {key}"
        return node

    def _fetch(self, key: NodeKey) -> Node | None:
        cache = self._cache
        node = cache.get(key)
        if node is not None:
            self.cache_hits += 1
            cache.move_to_end(key)
            return node
        self.cache_misses += 1
        data = self._reader(key)
        if data is None:
            return None
        node = decode_node(self._suite, data, self._empty)
        self._remember(key, node)
        return node

    def _emit(self, key: NodeKey, node: Node) -> None:
        self._nodes[key] = encode_node(node)
        self._remember(key, node)

    def _remember(self, key: NodeKey, node: Node) -> None:
        cache = self._cache
        cache[key] = node
        if len(cache) > self._cache_max:
            cache.popitem(last=False)

    def _hash(self, node: Node) -> bytes:
        return self._empty if isinstance(node, Empty) else node.hash


def _groups(
    items: list[tuple[str, Leaf | None]], depth: int
) -> Iterator[tuple[int, list[tuple[str, Leaf | None]]]]:
    """`items` (sorted by path, sharing `depth` nibbles) split by their next nibble."""
    start, end = 0, len(items)
    while start < end:
        path = items[start][0]
        nibble = NIBBLE[path[depth]]
        if nibble == RADIX - 1:
            stop = end
        else:
            bound = path[:depth] + _HEX[nibble + 1]
            stop = bisect.bisect_left(items, bound, start, end, key=_first)
        yield nibble, items[start:stop]
        start = stop
