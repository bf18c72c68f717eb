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

Speed and integrity live in `jmt_write.py` and `jmt_cache.py`: internal nodes stay in a
bounded cache, leaves of keys the caller says were present are replaced without being read,
and every node read from the store is checked against the hash its parent names
(`StateCorruptError` otherwise).

Owns the tree's versions, its reads and proofs, and `apply` (the write path is
`jmt_write.py`'s, the node cache `jmt_cache.py`'s, the node encoding `jmt_nodes.py`'s, proofs
and hashing `types/state_proof.py`'s). Must never touch the disk, a clock or randomness: nodes
it does not hold come through the injected reader, and what it writes leaves as a `TreeUpdate`
for the caller to store. The reader must return, before the next `apply` or read, every node
of the updates handed out (apply, then persist).
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from typing import Final

from consortia.crypto import Suite
from consortia.errors import DecodeError
from consortia.execution.jmt_cache import CACHE_NODES_DEFAULT, Cached
from consortia.execution.jmt_nodes import (
    BITMAP,
    CHILD,
    EMPTY,
    HASH,
    HASHED,
    LEAVES,
    VERSION,
    Empty,
    Leaf,
    MemoryNodeStore,
    NodeKey,
    NodeReader,
    NodesReader,
    StateCorruptError,
    TreeUpdate,
    checked_entry,
    child_hash,
    encode_node,
    nibbles,
)
from consortia.execution.jmt_write import Result, TreeWriter
from consortia.types.state_proof import (
    HEX,
    KEY_DOMAIN,
    NIBBLE,
    HeightUnavailableError,
    ProofLeaf,
    SparseMerkleProof,
    verify_proof,
)

__all__ = [
    "CACHE_NODES_DEFAULT",
    "HeightUnavailableError",
    "JellyfishTree",
    "MemoryNodeStore",
    "NodeKey",
    "NodeReader",
    "NodesReader",
    "SparseMerkleProof",
    "StateCorruptError",
    "TreeUpdate",
    "verify_proof",
]

# How many nodes `stored_items` reads at a time: bounds the node bytes one read holds while
# sparing a store transaction per node. The nodes still to read (a version, a path and a hash
# each, no bytes) grow to about 15 x the tree's depth x this: some 100,000 at 900,000 keys.
STORED_READ_BATCH: Final = 4096


class JellyfishTree(TreeWriter):
    def __init__(
        self,
        suite: Suite,
        reader: NodeReader,
        *,
        version: int | None = None,
        oldest_version: int = 0,
        cache_nodes_max: int = CACHE_NODES_DEFAULT,
        native: bool = True,
    ) -> None:
        """A tree over the nodes `reader` returns. `version` is the latest version written
        (None: nothing yet); `oldest_version` the oldest not pruned. `native`: see
        `TreeWriter`."""
        assert version is None or 0 <= oldest_version <= version
        super().__init__(suite, reader, cache_nodes_max, native=native)
        self._version = version
        self._oldest = oldest_version

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
        while isinstance(node, tuple):
            nibble = NIBBLE[path[depth]]
            bit = 1 << nibble
            if not node[BITMAP] & bit:
                return None
            depth += 1
            child = (node[CHILD + nibble], path[:depth], child_hash(node[HASHED], nibble))
            node = self._leaf(*child) if node[LEAVES] & bit else self._internal(*child)
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
        while isinstance(node, tuple):
            hashed, bitmap = node[HASHED], node[BITMAP]
            nibble = NIBBLE[path[depth]]
            bit = 1 << nibble
            bitmaps.append(bitmap & ~bit)
            siblings += [child_hash(hashed, n) for n in nibbles(bitmap & ~bit)]
            if not bitmap & bit:
                return None, SparseMerkleProof(None, bitmaps, siblings)
            depth += 1
            child = (node[CHILD + nibble], path[:depth], child_hash(hashed, nibble))
            node = self._leaf(*child) if node[LEAVES] & bit else self._internal(*child)
        if isinstance(node, Empty):
            return None, SparseMerkleProof(None, [], [])
        proof = SparseMerkleProof(ProofLeaf(node.key_hash, node.value_hash), bitmaps, siblings)
        return (node.value if node.path == path else None), proof

    def items(self, version: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in the order of the keys' hashes. Visits every
        node: for copying or checking a whole state, never on a hot path."""
        stack: list[Cached] = [self._root(version)]
        paths = [""]
        while stack:
            node, path = stack.pop(), paths.pop()
            if isinstance(node, Leaf):
                yield node.key, node.value
            elif isinstance(node, tuple):
                for nibble in reversed(nibbles(node[BITMAP])):
                    child = (node[CHILD + nibble], path + HEX[nibble], child_hash(node[0], nibble))
                    if node[LEAVES] >> nibble & 1:
                        stack.append(self._leaf(*child))
                    else:
                        stack.append(self._internal(*child))
                    paths.append(child[1])

    def stored_items(
        self, version: int | None = None, read_many: NodesReader | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in no set order: `items`, each node checked
        against the hash its parent names as well, but without building nodes or filling the
        cache (several times faster; for reopening a node's current values at a restart).
        Nodes are read up to `STORED_READ_BATCH` at a time, through `read_many` when given
        (one store transaction each), else one by one. A node missing, or not the one its
        parent names, is StateCorruptError."""
        root = self._root(version)
        if isinstance(root, Leaf):
            yield root.key, root.value
        if not isinstance(root, tuple):
            return
        hashed = root[HASHED]
        pending = [
            (root[CHILD + nibble], HEX[nibble], child_hash(hashed, nibble))
            for nibble in nibbles(root[BITMAP])
        ]
        if read_many is None:
            read = self._reader
            read_many = lambda keys: [read(key) for key in keys]  # noqa: E731
        new, empty, item = self._new, self._empty, self._item
        while pending:
            batch = pending[-STORED_READ_BATCH:]
            del pending[-STORED_READ_BATCH:]
            keys = [NodeKey(node_version, path) for node_version, path, _ in batch]
            found = read_many(keys)
            assert len(found) == len(keys), "one answer per node asked"
            for key, data, (_, path, expected) in zip(keys, found, batch, strict=True):
                if data is None:
                    raise StateCorruptError(f"the node store lacks state tree node {key}")
                try:
                    entry = checked_entry(new, empty, data, expected, item)
                except DecodeError as error:
                    raise StateCorruptError(f"state tree node {key}: {error.message}") from None
                if isinstance(entry, tuple):
                    if not entry[2].startswith(path):
                        raise StateCorruptError(f"state tree node {key}: a leaf off its path")
                    yield entry[0], entry[1]
                else:
                    pending += [(v, path + HEX[n], digest) for n, v, digest in entry]

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
        self._start(self._items(writes, present))
        root_key = NodeKey(version, "")
        old_key = None if previous is None else NodeKey(previous, "")
        old_root = EMPTY if old_key is None else self._root(previous)
        placed: Result
        if isinstance(old_root, Empty):
            placed = self._build(version, "", [item for item in self._batch if item[1] is not None])
        elif isinstance(old_root, Leaf):
            assert old_key is not None
            placed = self._update_leaf(version, old_key, old_root, self._batch)
        else:
            placed = self._many(self, version, "", old_root, 0, len(self._batch))
        if old_key is not None and (isinstance(old_root, Empty) or placed is False):
            self._drop(*old_key)
        if isinstance(placed, bytes):
            # The new root, an internal node, is written and cached already.
            root_hash = placed
        else:
            # A leaf, an unchanged root or none: this version's root node all the same.
            root: Cached
            if placed is False:
                # The same node, written again at this version.
                root = old_root
                if isinstance(root, tuple):
                    root = (*root[:VERSION], version, *root[VERSION + 1 :])
            elif placed is None:
                root = EMPTY
            else:
                # One key left: the root is its leaf.
                _, leaf_hash, key, value, _ = placed
                assert value is not None
                root = Leaf(self._suite, key, value)
                assert root.hash == leaf_hash
            self._nodes[root_key] = encode_node(root)
            self._remember_root(version, root)
            root_hash = self._node_hash(root)
        update = TreeUpdate(version, root_hash, self._nodes, self._stale)
        self._nodes, self._stale = {}, []
        self._batch, self._paths = [], []
        self._version = version
        return update

    def retain_from(self, version: int) -> None:
        """Versions before `version` are being pruned: refuse them from now on."""
        assert self._version is not None and self._oldest <= version <= self._version
        self._oldest = version

    # ------------------------------------------------------------------ nodes

    def _root(self, version: int | None) -> Cached:
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
        node = self._roots.get(at)
        if node is not None:
            self.cache_hits += 1
            return node
        node = self._read(at, "")
        if node is None:
            raise HeightUnavailableError(f"no state tree at version {at}")
        self._remember_root(at, node)
        return node

    def _node_hash(self, node: Cached) -> bytes:
        if isinstance(node, Empty):
            return self._empty
        if isinstance(node, tuple):
            digest: bytes = node[HASH]
            return digest
        return node.hash
