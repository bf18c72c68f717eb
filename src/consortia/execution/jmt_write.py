"""How the state tree (`jmt.py`) reaches its nodes and writes a version.

`NodeCache` reads nodes through the injected reader, checks each against the hash its parent
names (`StateCorruptError` otherwise) and keeps decoded internal nodes (and roots) in a bounded
cache, from which replaced nodes leave as soon as they go stale, so the upper levels of a
large tree are always there. `TreeWriter` builds a version's new nodes and stale list, as
`JellyfishTree.apply` asks: a subtree at a time for the writes under it, and, for a single
key set (the common case below the top levels), straight down its path and up again. A
caller that says which written keys were present before spares reading the leaves it only
replaces: a present key under a leaf child is that leaf.

Owns the node cache and the write path. Must never touch the disk, a clock or randomness;
the tree's versions and reads are `jmt.py`'s.
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
    Internal,
    Leaf,
    Node,
    NodeKey,
    NodeReader,
    StateCorruptError,
    decode_node,
    encode_internal,
    encode_leaf,
    internal_node,
)
from consortia.types.state_proof import (
    HASH_SIZE,
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    NIBBLE,
    PATH_LENGTH,
    RADIX,
    placeholder,
)

# Decoded internal nodes kept in memory: every internal node of a tree of about a million
# keys (a tree of n random keys has about n / 3 of them).
CACHE_NODES_DEFAULT: Final = 1 << 19
# When the cache is full, the oldest eighth of it goes at once.
_EVICT_SHARE: Final = 8
_HEX: Final = "0123456789abcdef"
by_path = itemgetter(0)
# NodeKey(version, path) without the Python-level constructor, on the hot path.
_node_key = tuple.__new__

# A write: the key's path (its hash, in hex), its new leaf (None: deleted), and whether the
# key was present before (None: not known).
Item = tuple[str, Leaf | None, bool | None]


class Placed:
    """A subtree built by `apply`: its top node, and where it is stored (None for a leaf not
    yet placed: a leaf's place is fixed only when its parent is)."""

    __slots__ = ("key", "node")

    def __init__(self, node: Leaf | Internal, key: NodeKey | None) -> None:
        self.node = node
        self.key = key


# What updating a subtree gives: a new subtree, None (it is empty now), or False (unchanged).
Result = Placed | None | Literal[False]


class NodeCache:
    """Nodes through the reader, checked, the internal ones (and roots) cached."""

    def __init__(self, suite: Suite, reader: NodeReader, cache_nodes_max: int) -> None:
        assert suite.hash_size == HASH_SIZE
        assert cache_nodes_max >= 1
        self._suite = suite
        self._hash_of = suite.hash
        self._reader = reader
        self._empty = placeholder(suite)
        # Internal nodes and roots, oldest first.
        self._cache: dict[NodeKey, Node] = {}
        self._cache_max = cache_nodes_max
        self.cache_hits = 0
        self.cache_misses = 0

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


class TreeWriter(NodeCache):
    """The write path of `JellyfishTree.apply`: new nodes into `_nodes`, stale ones into
    `_stale`."""

    def __init__(self, suite: Suite, reader: NodeReader, cache_nodes_max: int) -> None:
        super().__init__(suite, reader, cache_nodes_max)
        # The update `apply` is building.
        self._nodes: dict[NodeKey, bytes] = {}
        self._stale: list[NodeKey] = []

    def _items(
        self, writes: Mapping[bytes, bytes | None], present: Container[bytes] | None
    ) -> Iterator[Item]:
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
        self, version: int, path: str, key: NodeKey, node: Internal, writes: list[Item]
    ) -> Result:
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
            return Placed(only, None)
        slots = (list(node.hashes), list(node.versions), bitmap, leaves)
        return self._finish(version, path, slots, changed)

    def _changed_children(
        self, version: int, path: str, node: Internal, writes: list[Item]
    ) -> list[tuple[int, Placed | None]]:
        """The children of `node` that `writes` change, each as it is now (None: empty)."""
        changed: list[tuple[int, Placed | None]] = []
        depth = len(path)
        if len(writes) == 1:
            groups: list[tuple[int, list[Item]]] = [(NIBBLE[writes[0][0][depth]], writes)]
        else:
            groups = _groups(writes, depth)
        for nibble, group in groups:
            bit = 1 << nibble
            child_path = path + _HEX[nibble]
            placed: Result
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

    def _update_one(self, version: int, key: NodeKey, node: Internal, item: Item) -> Result:
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
    ) -> Placed:
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
        return Placed(top, top_key)

    def _replace_leaf(
        self, version: int, path: str, key: NodeKey, digest: bytes, writes: list[Item]
    ) -> Result:
        """The subtree of the leaf at `path` (stored at `key`, hashing to `digest`) after
        `writes`; the leaf is read only when it must move (a new key joins it)."""
        own: Item | None = None
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
            joining.sort(key=by_path)
            return self._build(version, path, joining)
        # A present key under a leaf child is that leaf's key: no other key lives there.
        new = own[1]
        others = [item for item in writes if item is not own and item[1] is not None]
        if not others:
            if new is not None and new.hash == digest:
                return False
            self._drop(key)
            return None if new is None else Placed(new, None)
        self._drop(key)
        if new is not None:
            others.append(own)
            others.sort(key=by_path)
        return self._build(version, path, others)

    def _update_leaf(
        self, version: int, path: str, key: NodeKey, leaf: Leaf, writes: list[Item]
    ) -> Result:
        own: Leaf | None = leaf
        others: list[Item] = []
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
            others.sort(key=by_path)
        return self._build(version, path, others)

    def _build(self, version: int, path: str, leaves: list[Item]) -> Placed | None:
        """A subtree at `path` of `leaves` alone (no None among them)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            leaf = leaves[0][1]
            assert leaf is not None
            return Placed(leaf, None)
        assert len(path) < PATH_LENGTH, "two leaves with one key hash"
        changed: list[tuple[int, Placed | None]] = []
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
        changed: list[tuple[int, Placed | None]],
    ) -> Placed:
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

    def _place(self, key: NodeKey, node: Internal) -> Placed:
        self._nodes[key] = encode_internal(node)
        self._remember(key, node)
        return Placed(node, key)

    def _drop(self, key: NodeKey) -> None:
        """`key` is stale from this version on: list it, and forget it."""
        self._stale.append(key)
        self._cache.pop(key, None)


def _groups(items: list[Item], depth: int) -> list[tuple[int, list[Item]]]:
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
            stop = bisect.bisect_left(items, bound, start, end, key=by_path)
        groups.append((nibble, items[start:stop]))
        start = stop
    return groups
