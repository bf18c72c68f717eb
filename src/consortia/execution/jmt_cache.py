"""The state tree's node cache (`jmt.py`, `jmt_write.py`): nodes read through the injected
reader, checked, and the internal ones kept.

`NodeCache` reads nodes through the reader, checks each against the hash its parent names
(`StateCorruptError` otherwise) and keeps decoded internal nodes in a bounded cache, one per
path (the latest version's, as long as it is there: each entry knows its version and a lookup
for another version misses; a read of an older version never displaces a later one), from
which replaced nodes leave as soon as they go stale, so the upper levels of a large tree are
always there. Roots are kept apart, by version. Keys are paths (strings) and nodes flat tuples
of atoms (`jmt_nodes.Branch`), so the garbage collector tracks nothing the cache holds.

Owns the cache and the checks on what the reader returns. Must never touch the disk, a clock
or randomness, and never hand out a node it has not checked against its parent's hash.
"""

from __future__ import annotations

from itertools import islice
from typing import Final

from consortia.crypto import Suite
from consortia.errors import DecodeError
from consortia.execution.jmt_nodes import (
    HASH,
    VERSION,
    Branch,
    Empty,
    Leaf,
    NodeKey,
    NodeReader,
    StateCorruptError,
    decode_stored,
    hasher,
)
from consortia.types.state_proof import HASH_SIZE, placeholder

# Decoded internal nodes kept in memory: every internal node of a tree of about a million
# keys (a tree of n random keys has about n / 3 of them).
CACHE_NODES_DEFAULT: Final = 1 << 19
# Roots kept in memory, the latest versions' (apart from the cache: a root per version).
_ROOTS_MAX: Final = 256
# When the cache is full, the oldest eighth of it goes at once.
_EVICT_SHARE: Final = 8

Cached = Leaf | Branch | Empty


class NodeCache:
    """Nodes through the reader, checked, the internal ones cached by path, roots by
    version."""

    def __init__(self, suite: Suite, reader: NodeReader, cache_nodes_max: int) -> None:
        assert suite.hash_size == HASH_SIZE
        assert cache_nodes_max >= 1
        self._suite = suite
        self._hash_of = suite.hash
        self._new = hasher(suite)
        self._reader = reader
        self._empty = placeholder(suite)
        # Internal nodes (not roots) by path, each the latest read or written there, oldest
        # first.
        self._cache: dict[str, Branch] = {}
        self._cache_max = cache_nodes_max
        # Roots by version, oldest first.
        self._roots: dict[int, Cached] = {}
        self.cache_hits = 0
        self.cache_misses = 0

    def _internal(self, version: int, path: str, digest: bytes) -> Branch:
        """The internal node at `path` written at `version`, whose parent names it by
        `digest` (`path` not the root's)."""
        cached = self._cache.get(path)
        if cached is not None and cached[VERSION] == version:
            self.cache_hits += 1
            return cached
        node = self._read(version, path)
        if not isinstance(node, tuple) or node[HASH] != digest:
            raise StateCorruptError(
                f"state tree node {NodeKey(version, path)} is not the internal node named"
            )
        if cached is None or cached[VERSION] < version:
            # A later version's node stays: the latest tree's are the ones written over.
            self._remember(path, node)
        return node

    def _leaf(self, version: int, path: str, digest: bytes) -> Leaf:
        """The leaf at `path` written at `version`, whose parent names it by `digest`
        (leaves are not cached)."""
        node = self._read(version, path)
        if not isinstance(node, Leaf) or node.hash != digest or not node.path.startswith(path):
            raise StateCorruptError(
                f"state tree node {NodeKey(version, path)} is not the leaf named"
            )
        return node

    def _read(self, version: int, path: str) -> Cached | None:
        self.cache_misses += 1
        key = NodeKey(version, path)
        data = self._reader(key)
        if data is None:
            if path:
                # A node a retained version reaches is never missing, unless the store is.
                raise StateCorruptError(f"the node store lacks state tree node {key}")
            return None
        try:
            return decode_stored(self._new, self._suite, data, self._empty, version)
        except DecodeError as error:
            raise StateCorruptError(f"state tree node {key}: {error.message}") from None

    def _remember(self, path: str, node: Branch) -> None:
        cache = self._cache
        # Out and in again: the dict's order is the age of its entries.
        cache.pop(path, None)
        cache[path] = node
        if len(cache) > self._cache_max:
            self._evict()

    def _remember_root(self, version: int, node: Cached) -> None:
        roots = self._roots
        roots[version] = node
        if len(roots) > _ROOTS_MAX:
            del roots[next(iter(roots))]

    def _evict(self) -> None:
        """The oldest share of the cache goes (what changes each version is always young)."""
        cache = self._cache
        for old in list(islice(cache, max(1, self._cache_max // _EVICT_SHARE))):
            del cache[old]
