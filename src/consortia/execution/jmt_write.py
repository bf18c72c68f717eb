"""How the state tree (`jmt.py`) reaches its nodes and writes a version.

`NodeCache` reads nodes through the injected reader, checks each against the hash its parent
names (`StateCorruptError` otherwise) and keeps decoded internal nodes (and roots) in a bounded
cache, from which replaced nodes leave as soon as they go stale, so the upper levels of a
large tree are always there. `TreeWriter` builds a version's new nodes and stale list, as
`JellyfishTree.apply` asks: the writes sorted by path once, then each internal node the writes
pass is visited once, splitting the writes under it by their next nibble (by bisection, the
writes kept in place and addressed by index); a single key set (the common case below the top
levels) goes straight down its path and up again. A caller that says which written keys were
present before spares reading the leaves it only replaces: a present key under a leaf child is
that leaf.

The write path is the hot path of a block's commit, so it is written for CPython: nodes are
plain tuples of atoms (`jmt_nodes.Branch`; the cache's keys too), which the garbage collector
stops tracking, a write is a plain tuple (`Item`), and each node is hashed and encoded once,
through hashlib's constructor of the suite's hash (`jmt_nodes.hasher`).

Owns the node cache and the write path. Must never touch the disk, a clock or randomness;
the tree's versions and reads are `jmt.py`'s.
"""

from __future__ import annotations

import bisect
from collections.abc import Container, Mapping
from itertools import islice
from operator import itemgetter
from typing import Final, Literal

from consortia.crypto import Suite
from consortia.errors import DecodeError
from consortia.execution.jmt_nodes import (
    SLOTS,
    Branch,
    Empty,
    Leaf,
    NodeKey,
    NodeReader,
    StateCorruptError,
    child_hash,
    decode_stored,
    split_hashes,
    encode_branch,
    encode_leaf,
    hasher,
    make_branch,
)
from consortia.types.state_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    KEY_DOMAIN,
    LEAF_DOMAIN,
    NIBBLE,
    PATH_LENGTH,
    RADIX,
    VALUE_DOMAIN,
    placeholder,
)

# Decoded internal nodes kept in memory: every internal node of a tree of about a million
# keys (a tree of n random keys has about n / 3 of them).
CACHE_NODES_DEFAULT: Final = 1 << 19
# When the cache is full, the oldest eighth of it goes at once.
_EVICT_SHARE: Final = 8
_HEX: Final = "0123456789abcdef"
# The nibble after each nibble (the bound of its writes, for bisection).
_NEXT: Final = {_HEX[nibble]: _HEX[nibble + 1] for nibble in range(RADIX - 1)}
by_path = itemgetter(0)

# NodeKey(version, path) from a (version, path) tuple, without the Python-level constructor.
_node_key = tuple.__new__

# A write: the key's path (its hash, in hex), its new leaf's hash (None: deleted), the key,
# its value (None: deleted), and whether the key was present before (None: not known). A leaf
# is a write too (its own, known present).
Item = tuple[str, bytes | None, bytes, bytes | None, bool | None]
# Where a node is cached: (version, path), a plain tuple (equal to its NodeKey).
CacheKey = tuple[int, str]
Cached = Leaf | Branch | Empty

# What updating a subtree gives: the hash of the internal node now at its path (written at
# this version), a leaf to place (an Item: a leaf's place is fixed only when its parent is),
# None (the subtree is empty now), or False (unchanged).
Result = bytes | Item | None | Literal[False]


class NodeCache:
    """Nodes through the reader, checked, the internal ones (and roots) cached."""

    def __init__(self, suite: Suite, reader: NodeReader, cache_nodes_max: int) -> None:
        assert suite.hash_size == HASH_SIZE
        assert cache_nodes_max >= 1
        self._suite = suite
        self._hash_of = suite.hash
        self._new = hasher(suite)
        self._reader = reader
        self._empty = placeholder(suite)
        # Internal nodes and roots, oldest first.
        self._cache: dict[CacheKey, Cached] = {}
        self._cache_max = cache_nodes_max
        self.cache_hits = 0
        self.cache_misses = 0

    def _internal(self, key: CacheKey, digest: bytes) -> Branch:
        """The internal node at `key`, whose parent names it by `digest`."""
        node = self._cache.get(key)
        if node is not None:
            self.cache_hits += 1
            assert isinstance(node, tuple)
            return node
        node = self._read(key)
        if not isinstance(node, tuple) or node[4] != digest:
            raise StateCorruptError(f"state tree node {_named(key)} is not the internal node named")
        self._remember(key, node)
        return node

    def _leaf(self, key: CacheKey, digest: bytes) -> Leaf:
        """The leaf at `key`, whose parent names it by `digest` (leaves are not cached)."""
        node = self._read(key)
        if not isinstance(node, Leaf) or node.hash != digest or not node.path.startswith(key[1]):
            raise StateCorruptError(f"state tree node {_named(key)} is not the leaf named")
        return node

    def _read(self, key: CacheKey) -> Cached | None:
        self.cache_misses += 1
        named = _named(key)
        data = self._reader(named)
        if data is None:
            if key[1]:
                # A node a retained version reaches is never missing, unless the store is.
                raise StateCorruptError(f"the node store lacks state tree node {named}")
            return None
        try:
            return decode_stored(self._new, self._suite, data, self._empty)
        except DecodeError as error:
            raise StateCorruptError(f"state tree node {named}: {error.message}") from None

    def _remember(self, key: CacheKey, node: Cached) -> None:
        cache = self._cache
        # A plain tuple key (a NodeKey would stay tracked by the garbage collector).
        cache[(key[0], key[1])] = node
        if len(cache) > self._cache_max:
            self._evict()

    def _evict(self) -> None:
        """The oldest share of the cache goes (what changes each version is always young)."""
        cache = self._cache
        for old in list(islice(cache, max(1, self._cache_max // _EVICT_SHARE))):
            del cache[old]


def _named(key: CacheKey) -> NodeKey:
    return key if isinstance(key, NodeKey) else NodeKey(key[0], key[1])


class TreeWriter(NodeCache):
    """The write path of `JellyfishTree.apply`: new nodes into `_nodes`, stale ones into
    `_stale`, over the sorted writes `_batch` (and their paths, `_paths`)."""

    def __init__(self, suite: Suite, reader: NodeReader, cache_nodes_max: int) -> None:
        super().__init__(suite, reader, cache_nodes_max)
        # The update `apply` is building.
        self._nodes: dict[NodeKey, bytes] = {}
        self._stale: list[NodeKey] = []
        self._batch: list[Item] = []
        self._paths: list[str] = []

    def _items(
        self, writes: Mapping[bytes, bytes | None], present: Container[bytes] | None
    ) -> list[Item]:
        """The writes, sorted by path."""
        new = self._new
        items: list[Item] = []
        append = items.append
        for key, value in writes.items():
            known = None if present is None else key in present
            digest = new(KEY_DOMAIN + key).digest()
            if value is None:
                append((digest.hex(), None, key, None, known))
            else:
                leaf_hash = new(LEAF_DOMAIN + digest + new(VALUE_DOMAIN + value).digest()).digest()
                append((digest.hex(), leaf_hash, key, value, known))
        items.sort(key=by_path)
        return items

    def _start(self, batch: list[Item]) -> None:
        self._nodes, self._stale = {}, []
        self._batch, self._paths = batch, [item[0] for item in batch]

    def _update(self, version: int, key: CacheKey, node: Branch, lo: int, hi: int) -> Result:
        """The subtree of the internal node `node` at `key` after the writes `_batch[lo:hi]`,
        all under its path."""
        batch = self._batch
        if hi - lo == 1 and batch[lo][1] is not None:
            return self._update_one(version, key, node, batch[lo])
        changed = self._changed_children(version, key[1], node, lo, hi)
        if not changed:
            return False
        self._drop(key)
        hashed, versions, bitmap, leaves, _ = node
        for nibble, placed in changed:
            bit = 1 << nibble
            if placed is None:
                bitmap &= ~bit
                leaves &= ~bit
            elif isinstance(placed, tuple):
                bitmap |= bit
                leaves |= bit
            else:
                bitmap |= bit
                leaves &= ~bit
        if not bitmap:
            return None
        if leaves == bitmap and bitmap & (bitmap - 1) == 0:
            # One child left, a leaf: it moves up to this node's place.
            nibble = bitmap.bit_length() - 1
            for changed_nibble, placed in changed:
                if changed_nibble == nibble:
                    assert isinstance(placed, tuple)
                    return placed
            child_key = (versions[nibble], key[1] + _HEX[nibble])
            only = self._leaf(child_key, child_hash(hashed, nibble))
            self._drop(child_key)
            return (only.path, only.hash, only.key, only.value, True)
        hashes = list(split_hashes(hashed))
        return self._finish(version, key[1], hashes, list(versions), (bitmap, leaves), changed)

    def _changed_children(
        self, version: int, path: str, node: Branch, lo: int, hi: int
    ) -> list[tuple[int, Result]]:
        """The children of `node` (at `path`) that the writes `_batch[lo:hi]` change, each as
        it is now."""
        batch, paths, cache, stale = self._batch, self._paths, self._cache, self._stale
        hashed, versions, bitmap, leaves, _ = node
        depth = len(path)
        changed: list[tuple[int, Result]] = []
        start = lo
        while start < hi:
            char = paths[start][depth]
            if start + 1 == hi or paths[start + 1][depth] != char:
                stop = start + 1
            elif char == "f":
                stop = hi
            else:
                stop = bisect.bisect_left(paths, path + _NEXT[char], start + 2, hi)
            nibble = NIBBLE[char]
            bit = 1 << nibble
            placed: Result
            if not bitmap & bit:
                # An empty child: the new keys under it, alone.
                placed = self._build(
                    version, path + char, [i for i in batch[start:stop] if i[1] is not None]
                )
                if placed is None:
                    start = stop
                    continue
            else:
                child_key = (versions[nibble], path + char)
                offset = SLOTS[nibble]
                digest = hashed[offset : offset + HASH_SIZE]
                item = batch[start]
                if not leaves & bit:
                    child = cache.get(child_key)
                    if child is None:
                        child = self._internal(child_key, digest)
                    else:
                        self.cache_hits += 1
                    if stop == start + 1 and item[1] is not None:
                        placed = self._update_one(version, child_key, child, item)  # type: ignore[arg-type]
                    else:
                        placed = self._update(version, child_key, child, start, stop)  # type: ignore[arg-type]
                elif stop == start + 1 and item[4]:
                    # A present key under a leaf child is that leaf's key: replaced unread.
                    if item[1] == digest:
                        start = stop
                        continue
                    stale.append(_node_key(NodeKey, child_key))
                    placed = None if item[1] is None else item
                else:
                    placed = self._replace_leaf(version, child_key, digest, batch[start:stop])
                if placed is False:
                    start = stop
                    continue
            changed.append((nibble, placed))
            start = stop
        return changed

    def _update_one(self, version: int, key: CacheKey, node: Branch, item: Item) -> Result:
        """`_update` for one key set (not deleted): down its path, then up again rewriting
        the nodes passed (the common case below the top levels of a large tree)."""
        item_path, known = item[0], item[4]
        passed: list[tuple[CacheKey, Branch, int]] = [(key, node, NIBBLE[item_path[len(key[1])]])]
        depth = len(key[1])
        cache = self._cache
        # The subtree below the lowest node passed: a leaf to place under it, or the hash of
        # an internal node written at this version.
        top: Item | bytes = item
        while True:
            nibble = passed[-1][2]
            bit = 1 << nibble
            depth += 1
            if not node[2] & bit:
                break
            child_key = (node[1][nibble], item_path[:depth])
            offset = SLOTS[nibble]
            digest = node[0][offset : offset + HASH_SIZE]
            if node[3] & bit:
                if known:
                    # The key's own leaf: replaced without being read.
                    if item[1] == digest:
                        return False
                    self._stale.append(_node_key(NodeKey, child_key))
                    break
                placed = self._replace_leaf(version, child_key, digest, [item])
                if placed is False:
                    return False
                assert placed is not None
                top = placed
                break
            child = cache.get(child_key)
            if child is None:
                child = self._internal(child_key, digest)
            else:
                self.cache_hits += 1
            node = child  # type: ignore[assignment]
            passed.append((child_key, node, NIBBLE[item_path[depth]]))
        return self._rewrite_up(version, passed, top)

    def _rewrite_up(
        self, version: int, passed: list[tuple[CacheKey, Branch, int]], top: Item | bytes
    ) -> bytes:
        """The nodes `passed` (root side first), each rewritten over the new subtree below
        (`top`); the hash of the highest."""
        new, nodes, stale, cache = self._new, self._nodes, self._stale, self._cache
        for key, node, nibble in reversed(passed):
            stale.append(_node_key(NodeKey, key))
            cache.pop(key, None)
            old_hashed, old_versions, bitmap, leaves, _ = node
            path = key[1]
            bit = 1 << nibble
            if isinstance(top, tuple):
                nodes[_node_key(NodeKey, (version, path + _HEX[nibble]))] = encode_leaf(
                    top[2],
                    top[3],  # type: ignore[arg-type]
                )
                digest: bytes = top[1]  # type: ignore[assignment]
                leaves |= bit
            else:
                digest = top
                leaves &= ~bit
            offset = SLOTS[nibble]
            hashed = old_hashed[:offset] + digest + old_hashed[offset + HASH_SIZE :]
            versions = list(old_versions)
            versions[nibble] = version
            top = new(hashed).digest()
            branch = (hashed, tuple(versions), bitmap | bit, leaves, top)
            cache_key = (version, path)
            nodes[_node_key(NodeKey, cache_key)] = encode_branch(branch)
            cache[cache_key] = branch
        if len(cache) > self._cache_max:
            self._evict()
        assert isinstance(top, bytes)
        return top

    def _replace_leaf(
        self, version: int, key: CacheKey, digest: bytes, writes: list[Item]
    ) -> Result:
        """The subtree of the leaf at `key` (hashing to `digest`) after `writes`; the leaf is
        read only when it must move (a new key joins it)."""
        own: Item | None = None
        for item in writes:
            if item[4] is None:
                # Which keys were present is not known: read the leaf.
                return self._update_leaf(version, key, self._leaf(key, digest), writes)
            if item[4]:
                own = item
        if own is None:
            # Only new keys (and deletions of absent ones): the leaf stays, beside them.
            joining = [item for item in writes if item[1] is not None]
            if not joining:
                return False
            leaf = self._leaf(key, digest)
            self._drop(key)
            joining.append((leaf.path, leaf.hash, leaf.key, leaf.value, True))
            joining.sort(key=by_path)
            return self._build(version, key[1], joining)
        # A present key under a leaf child is that leaf's key: no other key lives there.
        others = [item for item in writes if item is not own and item[1] is not None]
        if not others:
            if own[1] == digest:
                return False
            self._drop(key)
            return None if own[1] is None else own
        self._drop(key)
        if own[1] is not None:
            others.append(own)
            others.sort(key=by_path)
        return self._build(version, key[1], others)

    def _update_leaf(self, version: int, key: CacheKey, leaf: Leaf, writes: list[Item]) -> Result:
        """The subtree of `leaf` (stored at `key`) after `writes`."""
        own: Item | None = (leaf.path, leaf.hash, leaf.key, leaf.value, True)
        others: list[Item] = []
        for item in writes:
            if item[0] == leaf.path:
                own = item if item[1] is not None else None
            elif item[1] is not None:
                others.append(item)
        if not others and own is not None and own[1] == leaf.hash:
            return False
        self._drop(key)
        if own is not None:
            others.append(own)
            others.sort(key=by_path)
        return self._build(version, key[1], others)

    def _build(self, version: int, path: str, leaves: list[Item]) -> Result:
        """A subtree at `path` of `leaves` alone (sorted, no deletion among them)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            return leaves[0]
        assert len(path) < PATH_LENGTH, "two leaves with one key hash"
        changed: list[tuple[int, Result]] = []
        bitmap = leaf_bits = 0
        for nibble, group in _groups(leaves, len(path)):
            bitmap |= 1 << nibble
            if len(group) == 1:
                leaf_bits |= 1 << nibble
                changed.append((nibble, group[0]))
            else:
                changed.append((nibble, self._build(version, path + _HEX[nibble], group)))
        empty = self._empty
        return self._finish(version, path, [empty] * RADIX, [0] * RADIX, (bitmap, leaf_bits), changed)

    def _finish(
        self,
        version: int,
        path: str,
        hashes: list[bytes],
        versions: list[int],
        bitmaps: tuple[int, int],
        changed: list[tuple[int, Result]],
    ) -> bytes:
        """The internal node at `path`, written at this version: its slots (`hashes` and
        `versions`, copies of the old node's or empty; the `bitmaps` of children and of
        leaves as they are now) with the `changed` children put in. Its hash."""
        bitmap, leaves = bitmaps
        assert bitmap and bitmap <= BITMAP_MAX
        empty = self._empty
        nodes = self._nodes
        for nibble, placed in changed:
            if placed is None:
                hashes[nibble] = empty
                versions[nibble] = 0
                continue
            if isinstance(placed, tuple):
                nodes[_node_key(NodeKey, (version, path + _HEX[nibble]))] = encode_leaf(
                    placed[2],
                    placed[3],  # type: ignore[arg-type]
                )
                hashes[nibble] = placed[1]  # type: ignore[assignment]
            else:
                assert placed is not False
                hashes[nibble] = placed
            versions[nibble] = version
        node = make_branch(self._new, hashes, versions, bitmap, leaves)
        key = (version, path)
        nodes[_node_key(NodeKey, key)] = encode_branch(node)
        self._remember(key, node)
        return node[4]

    def _drop(self, key: CacheKey) -> None:
        """`key` is stale from this version on: list it, and forget it."""
        self._stale.append(_node_key(NodeKey, key))
        self._cache.pop(key, None)


def _groups(items: list[Item], depth: int) -> list[tuple[int, list[Item]]]:
    """`items` (sorted by path, sharing `depth` nibbles) split by their next nibble."""
    start, end = 0, len(items)
    groups = []
    while start < end:
        path = items[start][0]
        char = path[depth]
        if char == "f":
            stop = end
        else:
            stop = bisect.bisect_left(items, path[:depth] + _NEXT[char], start, end, key=by_path)
        groups.append((NIBBLE[char], items[start:stop]))
        start = stop
    return groups
