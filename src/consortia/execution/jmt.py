"""Committed state as a versioned 16-ary sparse Merkle tree (a Jellyfish Merkle tree).

Each key's path is the 64 nibbles of its hash (`types/state_proof.key_hash`). Leaves hold the
key and its value; an internal node holds up to 16 children, each referenced by hash and by the
version that wrote it, and marks which of them are leaves. Every node is immutable and stored
once under its `NodeKey` (the version that wrote it, the nibble path where it sits), so the
tree of every version is still there, sharing whatever it did not change. A subtree holding
one leaf is that leaf, so a path is only as deep as needed to tell its key from the others
(about log16 of the number of keys).

Values live in their leaves: `get(key, version)` walks from that version's root to the leaf,
so reads at any retained version cost the same as reads at the latest, nothing is kept beside
the nodes, and pruning a version's nodes prunes its values with them.

Every version has a root node at `NodeKey(version, "")` (the empty tree's is `Empty`), so a
version exists exactly when its root node does. `apply(version, writes)` writes a version: it
returns a `TreeUpdate` with the new root hash, the new nodes (NodeKey -> bytes) and the nodes
this version made stale. The caller persists the update atomically with its block and, to
prune, deletes the nodes that became stale at or before the oldest version it keeps (every
version from there on reaches none of them), then calls `retain_from` so the tree refuses
older versions clearly (`HeightUnavailableError`). `MemoryNodeStore` does this in a dict.

Speed: decoded internal nodes (and roots) stay in a bounded cache, from which replaced nodes
leave as soon as they go stale, so the upper levels of a large tree are always there. A
caller that knows which written keys were present before (`present`, the engine's current
values) spares reading the leaves it only replaces: a present key under a leaf child is that
leaf. Every node read from the store is checked against the hash its parent names
(`StateCorruptError` otherwise).

Owns the tree's shape, its versions and the cache of decoded nodes (their encoding is
`jmt_nodes.py`'s, proofs and hashing `types/state_proof.py`'s). Must never touch the disk, a
clock or randomness: nodes it does not hold come through the injected reader, and what it
writes leaves as a `TreeUpdate` for the caller to store. The reader must return, before the
next `apply` or read, every node of the updates handed out (apply, then persist).
"""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterator, Mapping
from itertools import islice
from operator import itemgetter
from typing import Final, Literal

from consortia.crypto import Suite
from consortia.errors import DecodeError
from consortia.execution.jmt_nodes import (
    EMPTY,
    Empty,
    Internal,
    Leaf,
    MemoryNodeStore,
    Node,
    NodeKey,
    NodeReader,
    StateCorruptError,
    TreeUpdate,
    decode_node,
    encode_internal,
    encode_leaf,
    encode_node,
    internal_node,
)
from consortia.types.state_proof import (
    HASH_SIZE,
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    NIBBLE,
    PATH_LENGTH,
    RADIX,
    HeightUnavailableError,
    ProofLeaf,
    SparseMerkleProof,
    placeholder,
    verify_proof,
)

__all__ = [
    "CACHE_NODES_DEFAULT",
    "HeightUnavailableError",
    "JellyfishTree",
    "MemoryNodeStore",
    "NodeKey",
    "NodeReader",
    "SparseMerkleProof",
    "StateCorruptError",
    "TreeUpdate",
    "verify_proof",
]

# Decoded internal nodes kept in memory: every internal node of a tree of about a million
# keys (a tree of n random keys has about n / 3 of them).
CACHE_NODES_DEFAULT: Final = 1 << 19
# When the cache is full, the oldest eighth of it goes at once.
_EVICT_SHARE: Final = 8
_HEX: Final = "0123456789abcdef"
_first = itemgetter(0)
# NodeKey(version, path) without the Python-level constructor, on the hot path.
_node_key = tuple.__new__

# A write: the key's path (its hash, in hex), its new leaf (None: deleted), and whether the
# key was present before (None: not known).
_Item = tuple[str, Leaf | None, bool | None]


class _Placed:
    """A subtree built by `apply`: its top node, and where it is stored (None for a leaf not
    yet placed: a leaf's place is fixed only when its parent is)."""

    __slots__ = ("key", "node")

    def __init__(self, node: Leaf | Internal, key: NodeKey | None) -> None:
        self.node = node
        self.key = key


# What updating a subtree gives: a new subtree, None (it is empty now), or False (unchanged).
_Result = _Placed | None | Literal[False]


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
        self._hash_of = suite.hash
        self._reader = reader
        self._empty = placeholder(suite)
        self._version = version
        self._oldest = oldest_version
        # Internal nodes and roots, oldest first.
        self._cache: dict[NodeKey, Node] = {}
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
        return self._node_hash(self._root(version))

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        """The value of `key` at `version` (the latest when None); None when absent."""
        path = self._hash_of(KEY_DOMAIN + key).hex()
        node = self._root(version)
        depth = 0
        while isinstance(node, Internal):
            nibble = NIBBLE[path[depth]]
            bit = 1 << nibble
            if not node.bitmap & bit:
                return None
            depth += 1
            child = NodeKey(node.versions[nibble], path[:depth])
            if node.leaves & bit:
                node = self._leaf(child, node.hashes[nibble])
            else:
                node = self._internal(child, node.hashes[nibble])
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
        path = self._hash_of(KEY_DOMAIN + key).hex()
        node = self._root(version)
        bitmaps: list[int] = []
        siblings: list[bytes] = []
        depth = 0
        while isinstance(node, Internal):
            nibble = NIBBLE[path[depth]]
            bit = 1 << nibble
            bitmaps.append(node.bitmap & ~bit)
            siblings += node.siblings(nibble)
            if not node.bitmap & bit:
                return None, SparseMerkleProof(None, bitmaps, siblings)
            depth += 1
            child = NodeKey(node.versions[nibble], path[:depth])
            if node.leaves & bit:
                node = self._leaf(child, node.hashes[nibble])
            else:
                node = self._internal(child, node.hashes[nibble])
        if isinstance(node, Empty):
            return None, SparseMerkleProof(None, [], [])
        proof = SparseMerkleProof(ProofLeaf(node.key_hash, node.value_hash), bitmaps, siblings)
        return (node.value if node.path == path else None), proof

    def items(self, version: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in the order of the keys' hashes. Visits every
        node: for copying or checking a whole state, never on a hot path."""
        stack: list[Node] = [self._root(version)]
        paths = [""]
        while stack:
            node, path = stack.pop(), paths.pop()
            if isinstance(node, Leaf):
                yield node.key, node.value
            elif isinstance(node, Internal):
                for nibble, (child_version, digest) in reversed(node.children.items()):
                    child = NodeKey(child_version, path + _HEX[nibble])
                    if node.leaves >> nibble & 1:
                        stack.append(self._leaf(child, digest))
                    else:
                        stack.append(self._internal(child, digest))
                    paths.append(child.path)

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        version: int,
        writes: Mapping[bytes, bytes | None],
        present: Container[bytes] | None = None,
    ) -> TreeUpdate:
        """Write `version`: each key to its value, None deleting it. The first version may be
        any; each later one follows the one before. `present`, when given, must hold exactly
        the keys present at the version before (the caller's current values): the leaves of
        those keys are then replaced without being read."""
        previous = self._version
        assert version >= 0 and (previous is None or version == previous + 1), (
            "versions are applied in order"
        )
        batch = sorted(self._items(writes, present), key=_first)
        self._nodes, self._stale = {}, []
        root_key = NodeKey(version, "")
        old_key = None if previous is None else NodeKey(previous, "")
        old_root = EMPTY if old_key is None else self._root(previous)
        placed: _Result
        if isinstance(old_root, Empty):
            placed = self._build(version, "", [item for item in batch if item[1] is not None])
        elif isinstance(old_root, Leaf):
            assert old_key is not None
            placed = self._update_leaf(version, "", old_key, old_root, batch)
        else:
            assert old_key is not None
            placed = self._update(version, "", old_key, old_root, batch)
        root: Node
        if placed is False:
            root = old_root
        elif placed is None:
            root = EMPTY
        else:
            root = placed.node
        if old_key is not None and (isinstance(old_root, Empty) or placed is False):
            self._drop(old_key)
        if placed is None or placed is False or placed.key != root_key:
            # A leaf, an unchanged root or none: this version's root node all the same.
            self._nodes[root_key] = encode_node(root)
            self._remember(root_key, root)
        update = TreeUpdate(version, self._node_hash(root), self._nodes, self._stale)
        self._nodes, self._stale = {}, []
        self._version = version
        return update

    def retain_from(self, version: int) -> None:
        """Versions before `version` are being pruned: refuse them from now on."""
        assert self._version is not None and self._oldest <= version <= self._version
        self._oldest = version

    def _items(
        self, writes: Mapping[bytes, bytes | None], present: Container[bytes] | None
    ) -> Iterator[_Item]:
        suite, hash_of = self._suite, self._hash_of
        for key, value in writes.items():
            known = None if present is None else key in present
            digest = hash_of(KEY_DOMAIN + key)
            if value is None:
                yield digest.hex(), None, known
            else:
                leaf = Leaf(suite, key, value, digest)
                yield leaf.path, leaf, known

    def _update(
        self, version: int, path: str, key: NodeKey, node: Internal, writes: list[_Item]
    ) -> _Result:
        """The subtree of the internal node at `path` (stored at `key`) after `writes`, all
        under `path`."""
        if len(writes) == 1 and writes[0][1] is not None:
            return self._update_one(version, key, node, writes[0])
        changed = self._changed_children(version, path, node, writes)
        if not changed:
            return False
        self._drop(key)
        bitmap, leaves = node.bitmap, node.leaves
        for nibble, placed in changed:
            bit = 1 << nibble
            bitmap = bitmap & ~bit if placed is None else bitmap | bit
            if placed is not None and isinstance(placed.node, Leaf):
                leaves |= bit
            else:
                leaves &= ~bit
        if not bitmap:
            return None
        if leaves == bitmap and bitmap & (bitmap - 1) == 0:
            # One child left, a leaf: it moves up to this node's place.
            nibble = bitmap.bit_length() - 1
            for changed_nibble, placed in changed:
                if changed_nibble == nibble:
                    assert placed is not None and placed.key is None
                    return placed
            child_key = NodeKey(node.versions[nibble], path + _HEX[nibble])
            only = self._leaf(child_key, node.hashes[nibble])
            self._drop(child_key)
            return _Placed(only, None)
        slots = (list(node.hashes), list(node.versions), bitmap, leaves)
        return self._finish(version, path, slots, changed)

    def _changed_children(
        self, version: int, path: str, node: Internal, writes: list[_Item]
    ) -> list[tuple[int, _Placed | None]]:
        """The children of `node` that `writes` change, each as it is now (None: empty)."""
        changed: list[tuple[int, _Placed | None]] = []
        depth = len(path)
        if len(writes) == 1:
            groups: list[tuple[int, list[_Item]]] = [(NIBBLE[writes[0][0][depth]], writes)]
        else:
            groups = _groups(writes, depth)
        for nibble, group in groups:
            bit = 1 << nibble
            child_path = path + _HEX[nibble]
            placed: _Result
            if not node.bitmap & bit:
                placed = self._build(version, child_path, [i for i in group if i[1] is not None])
                if placed is None:
                    continue
            else:
                child_key = NodeKey(node.versions[nibble], child_path)
                digest = node.hashes[nibble]
                if node.leaves & bit:
                    placed = self._replace_leaf(version, child_path, child_key, digest, group)
                else:
                    child = self._internal(child_key, digest)
                    placed = self._update(version, child_path, child_key, child, group)
                if placed is False:
                    continue
            changed.append((nibble, placed))
        return changed

    def _update_one(self, version: int, key: NodeKey, node: Internal, item: _Item) -> _Result:
        """`_update` for one key set (not deleted): down its path, then up again rewriting
        the nodes passed (the common case below the top levels of a large tree). The hot
        path of `apply`: written out rather than through the general helpers."""
        item_path, leaf, known = item
        assert leaf is not None
        passed: list[tuple[NodeKey, Internal, int]] = []
        depth = len(key.path)
        cache = self._cache
        # The subtree below the lowest node passed: a node, and its key (None: a leaf to
        # place under that node).
        top: Leaf | Internal = leaf
        top_key: NodeKey | None = None
        while True:
            nibble = NIBBLE[item_path[depth]]
            bit = 1 << nibble
            passed.append((key, node, nibble))
            depth += 1
            if not node.bitmap & bit:
                break
            child_key = _node_key(NodeKey, (node.versions[nibble], item_path[:depth]))
            digest = node.hashes[nibble]
            if node.leaves & bit:
                if known:
                    # The key's own leaf: replaced without being read.
                    if leaf.hash == digest:
                        return False
                    self._stale.append(child_key)
                    break
                placed = self._replace_leaf(version, child_key.path, child_key, digest, [item])
                if placed is False:
                    return False
                assert placed is not None
                top, top_key = placed.node, placed.key
                break
            child = cache.get(child_key)
            if child is None:
                child = self._internal(child_key, digest)
            else:
                self.cache_hits += 1
            key, node = child_key, child  # type: ignore[assignment]
        return self._rewrite_up(version, passed, top, top_key)

    def _rewrite_up(
        self,
        version: int,
        passed: list[tuple[NodeKey, Internal, int]],
        top: Leaf | Internal,
        top_key: NodeKey | None,
    ) -> _Placed:
        """The nodes `passed` (root side first), each rewritten over the new subtree below."""
        hash_of, nodes, stale, cache = self._hash_of, self._nodes, self._stale, self._cache
        for key, node, nibble in reversed(passed):
            stale.append(key)
            cache.pop(key, None)
            hashes, versions = list(node.hashes), list(node.versions)
            bit = 1 << nibble
            if top_key is None:
                nodes[_node_key(NodeKey, (version, key.path + _HEX[nibble]))] = encode_leaf(
                    top.key,  # type: ignore[union-attr]
                    top.value,  # type: ignore[union-attr]
                )
                leaves = node.leaves | bit
            else:
                leaves = node.leaves & ~bit
            hashes[nibble] = top.hash
            versions[nibble] = version
            top = Internal(
                tuple(hashes),
                tuple(versions),
                node.bitmap | bit,
                leaves,
                hash_of(INTERNAL_DOMAIN + b"".join(hashes)),
            )
            top_key = _node_key(NodeKey, (version, key.path))
            nodes[top_key] = encode_internal(top)
            cache[top_key] = top
        if len(cache) > self._cache_max:
            self._evict()
        return _Placed(top, top_key)

    def _replace_leaf(
        self, version: int, path: str, key: NodeKey, digest: bytes, writes: list[_Item]
    ) -> _Result:
        """The subtree of the leaf at `path` (stored at `key`, hashing to `digest`) after
        `writes`; the leaf is read only when it must move (a new key joins it)."""
        own: _Item | None = None
        for item in writes:
            if item[2] is None:
                # Which keys were present is not known: read the leaf.
                return self._update_leaf(version, path, key, self._leaf(key, digest), writes)
            if item[2]:
                own = item
        if own is None:
            # Only new keys (and deletions of absent ones): the leaf stays, beside them.
            joining = [item for item in writes if item[1] is not None]
            if not joining:
                return False
            leaf = self._leaf(key, digest)
            self._drop(key)
            joining.append((leaf.path, leaf, True))
            joining.sort(key=_first)
            return self._build(version, path, joining)
        # A present key under a leaf child is that leaf's key: no other key lives there.
        new = own[1]
        others = [item for item in writes if item is not own and item[1] is not None]
        if not others:
            if new is not None and new.hash == digest:
                return False
            self._drop(key)
            return None if new is None else _Placed(new, None)
        self._drop(key)
        if new is not None:
            others.append(own)
            others.sort(key=_first)
        return self._build(version, path, others)

    def _update_leaf(
        self, version: int, path: str, key: NodeKey, leaf: Leaf, writes: list[_Item]
    ) -> _Result:
        own: Leaf | None = leaf
        others: list[_Item] = []
        for item in writes:
            if item[0] == leaf.path:
                own = item[1]
            elif item[1] is not None:
                others.append(item)
        if not others and own is not None and own.hash == leaf.hash:
            return False
        self._drop(key)
        if own is not None:
            others.append((own.path, own, True))
            others.sort(key=_first)
        return self._build(version, path, others)

    def _build(self, version: int, path: str, leaves: list[_Item]) -> _Placed | None:
        """A subtree at `path` of `leaves` alone (no None among them)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            leaf = leaves[0][1]
            assert leaf is not None
            return _Placed(leaf, None)
        assert len(path) < PATH_LENGTH, "two leaves with one key hash"
        changed: list[tuple[int, _Placed | None]] = []
        bitmap = leaf_bits = 0
        for nibble, group in _groups(leaves, len(path)):
            bitmap |= 1 << nibble
            if len(group) == 1:
                leaf_bits |= 1 << nibble
            changed.append((nibble, self._build(version, path + _HEX[nibble], group)))
        slots = ([self._empty] * RADIX, [0] * RADIX, bitmap, leaf_bits)
        return self._finish(version, path, slots, changed)

    def _finish(
        self,
        version: int,
        path: str,
        slots: tuple[list[bytes], list[int], int, int],
        changed: list[tuple[int, _Placed | None]],
    ) -> _Placed:
        """The internal node at `path`, written at this version: its `slots` (hashes and
        versions, copies of the old node's or empty; the bitmaps of children and of leaves as
        they are now) with the `changed` children put in."""
        hashes, versions, bitmap, leaves = slots
        empty = self._empty
        nodes = self._nodes
        for nibble, placed in changed:
            if placed is None:
                hashes[nibble] = empty
                versions[nibble] = 0
                continue
            child = placed.node
            if placed.key is None:
                assert isinstance(child, Leaf)
                nodes[NodeKey(version, path + _HEX[nibble])] = encode_leaf(child.key, child.value)
            hashes[nibble] = child.hash
            versions[nibble] = version
        node = internal_node(self._suite, hashes, versions, bitmap, leaves)
        return self._place(NodeKey(version, path), node)

    def _place(self, key: NodeKey, node: Internal) -> _Placed:
        self._nodes[key] = encode_internal(node)
        self._remember(key, node)
        return _Placed(node, key)

    def _drop(self, key: NodeKey) -> None:
        """`key` is stale from this version on: list it, and forget it."""
        self._stale.append(key)
        self._cache.pop(key, None)

    # ------------------------------------------------------------------ nodes

    def _root(self, version: int | None) -> Node:
        latest = self._version
        if latest is None:
            raise HeightUnavailableError("the state tree holds no version yet")
        at = latest if version is None else version
        if at > latest:
            raise HeightUnavailableError(f"version {at} is after the latest, {latest}")
        if at < self._oldest:
            raise HeightUnavailableError(
                f"version {at} is before {self._oldest}, the oldest version kept (older"
                " versions are pruned)"
            )
        key = NodeKey(at, "")
        node = self._cache.get(key)
        if node is not None:
            self.cache_hits += 1
            return node
        node = self._read(key)
        if node is None:
            raise HeightUnavailableError(f"no state tree at version {at}")
        self._remember(key, node)
        return node

    def _internal(self, key: NodeKey, digest: bytes) -> Internal:
        """The internal node at `key`, whose parent names it by `digest`."""
        node = self._cache.get(key)
        if node is not None:
            self.cache_hits += 1
            assert isinstance(node, Internal)
            return node
        node = self._read(key)
        if not isinstance(node, Internal) or node.hash != digest:
            raise StateCorruptError(f"state tree node {key} is not the internal node named")
        self._remember(key, node)
        return node

    def _leaf(self, key: NodeKey, digest: bytes) -> Leaf:
        """The leaf at `key`, whose parent names it by `digest` (leaves are not cached)."""
        node = self._read(key)
        if not isinstance(node, Leaf) or node.hash != digest or not node.path.startswith(key.path):
            raise StateCorruptError(f"state tree node {key} is not the leaf named")
        return node

    def _read(self, key: NodeKey) -> Node | None:
        self.cache_misses += 1
        data = self._reader(key)
        if data is None:
            if key.path:
                # A node a retained version reaches is never missing, unless the store is.
                raise StateCorruptError(f"the node store lacks state tree node {key}")
            return None
        try:
            return decode_node(self._suite, data, self._empty)
        except DecodeError as error:
            raise StateCorruptError(f"state tree node {key}: {error.message}") from None

    def _remember(self, key: NodeKey, node: Node) -> None:
        cache = self._cache
        cache[key] = node
        if len(cache) > self._cache_max:
            self._evict()

    def _evict(self) -> None:
        """The oldest share of the cache goes (what changes each version is always young)."""
        cache = self._cache
        for old in list(islice(cache, max(1, self._cache_max // _EVICT_SHARE))):
            del cache[old]

    def _node_hash(self, node: Node) -> bytes:
        return self._empty if isinstance(node, Empty) else node.hash


def _groups(items: list[_Item], depth: int) -> list[tuple[int, list[_Item]]]:
    """`items` (sorted by path, sharing `depth` nibbles) split by their next nibble."""
    start, end = 0, len(items)
    groups = []
    while start < end:
        path = items[start][0]
        nibble = NIBBLE[path[depth]]
        if nibble == RADIX - 1:
            stop = end
        else:
            bound = path[:depth] + _HEX[nibble + 1]
            stop = bisect.bisect_left(items, bound, start, end, key=_first)
        groups.append((nibble, items[start:stop]))
        start = stop
    return groups
