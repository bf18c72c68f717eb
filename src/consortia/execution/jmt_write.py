"""How the state tree (`jmt.py`) writes a version.

`TreeWriter` (over `jmt_cache.NodeCache`, which reads, checks and caches the nodes) builds a
version's new nodes and stale list, as `JellyfishTree.apply` asks: the writes sorted by path
once, then each internal node the writes pass is visited once, splitting the writes under it
by their next nibble (by bisection, the writes kept in place and addressed by index); a single
key set (the common case below the top levels) goes straight down its path and up again. A
caller that says which written keys were present before spares reading the leaves it only
replaces: a present key under a leaf child is that leaf.

The write path is the hot path of a block's commit, so it is written for CPython: a node is one
flat tuple of atoms (`jmt_nodes.Branch`), which the garbage collector stops tracking, the
cache is keyed by path (a string the write makes anyway), a write is a plain tuple (`Item`),
and each node is hashed and encoded once, through hashlib's constructor of the suite's hash
(`jmt_nodes.hasher`). Every tracked object a commit allocates costs it again in collections.
For the SHA-256 suite, the write path is in C (`_jmt_native.c` and `_jmt_update.c`, built by
the package's install): the split of the writes below the root (`_update`, `_changed_children`,
`_changed_child`, `_finish`), a key's way down and up again (`_update_one`, `_rewrite_up`: each
node rewritten, hashed and encoded, the stale list, the cache and the new nodes kept) and a
write's leaf hash. The C calls back the Python for the rarer turns (`_internal` on a cache miss,
`_replace_leaf`, `_build`, `_lift`, `_remember`). The Python it replaces stays: it runs for
every other suite and is held to the C by tests/unit/test_jmt_native.py.

Owns the write path. Must never touch the disk, a clock or randomness; the tree's versions
and reads are `jmt.py`'s, the node cache `jmt_cache.py`'s.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Container, Mapping
from operator import itemgetter
from typing import Final, Literal

from consortia.crypto import Suite
from consortia.execution.jmt_cache import NodeCache
from consortia.execution.jmt_nodes import (
    BITMAP,
    CHILD,
    DOMAIN_SIZE,
    HASH,
    INTERNAL_TAG,
    LEAF_TAG,
    LEAVES,
    SLOTS,
    VERSION,
    Branch,
    Leaf,
    NodeKey,
    NodeReader,
    child_hash,
    encode_branch,
    encode_record,
    split_hashes,
)
from consortia.types.state_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    LEAF_DOMAIN,
    NIBBLE,
    PATH_LENGTH,
    RADIX,
    VALUE_DOMAIN,
)

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

# What updating a subtree gives: the hash of the internal node now at its path (written at
# this version), a leaf to place (an Item: a leaf's place is fixed only when its parent is),
# None (the subtree is empty now), or False (unchanged).
Result = bytes | Item | None | Literal[False]
try:
    from consortia.execution import _jmt_native
except ImportError:  # pragma: no cover - the package's install builds it
    _jmt_native = None  # type: ignore[assignment]
# Whether the C rewrite is here (a source tree run without installing has only the Python).
NATIVE_AVAILABLE: Final = _jmt_native is not None
if _jmt_native is not None:
    _jmt_native.domains(KEY_DOMAIN, VALUE_DOMAIN, LEAF_DOMAIN)
    _jmt_native.set_node_key(NodeKey)


class TreeWriter(NodeCache):
    """The write path of `JellyfishTree.apply`: new nodes into `_nodes`, stale ones into
    `_stale`, over the sorted writes `_batch` (and their paths, `_paths`)."""

    def __init__(
        self, suite: Suite, reader: NodeReader, cache_nodes_max: int, *, native: bool = True
    ) -> None:
        """`native`: use the C write path (`_jmt_native.update` for the writes below the root,
        `update_one` for one key's path, `item`) where the suite's hash is SHA-256 (False: the
        Python, as tests compare them)."""
        super().__init__(suite, reader, cache_nodes_max)
        use_native = native and _jmt_native is not None and self._new is hashlib.sha256
        self._item: Callable[[bytes, bytes, bool | None], Item] = (
            _jmt_native.item if use_native else self._python_item
        )
        # `_update_one`, called as `self._one(self, ...)` (the writer is not bound in, so
        # that it holds no cycle through itself).
        self._one: Callable[[TreeWriter, int, str, Branch, Item], Result] = (
            _jmt_native.update_one if use_native else TreeWriter._update_one
        )
        # `_update`, called as `self._many(self, ...)` for the writes below the root.
        self._many: Callable[[TreeWriter, int, str, Branch, int, int], Result] = (
            _jmt_native.update if use_native else TreeWriter._update
        )
        # The update `apply` is building.
        self._nodes: dict[NodeKey, bytes] = {}
        self._stale: list[NodeKey] = []
        self._batch: list[Item] = []
        self._paths: list[str] = []

    def _items(
        self, writes: Mapping[bytes, bytes | None], present: Container[bytes] | None
    ) -> list[Item]:
        """The writes, sorted by path."""
        new, item = self._new, self._item
        items: list[Item] = []
        append = items.append
        for key, value in writes.items():
            known = None if present is None else key in present
            if value is None:
                append((new(KEY_DOMAIN + key).digest().hex(), None, key, None, known))
            else:
                append(item(key, value, known))
        items.sort(key=by_path)
        return items

    def _python_item(self, key: bytes, value: bytes, known: bool | None) -> Item:
        """The write of `key` to `value`: its path and leaf hash (`_jmt_native.item`)."""
        new = self._new
        digest = new(KEY_DOMAIN + key).digest()
        leaf_hash = new(LEAF_DOMAIN + digest + new(VALUE_DOMAIN + value).digest()).digest()
        return (digest.hex(), leaf_hash, key, value, known)

    def _start(self, batch: list[Item]) -> None:
        self._nodes, self._stale = {}, []
        self._batch, self._paths = batch, [item[0] for item in batch]

    def _update(self, version: int, path: str, node: Branch, lo: int, hi: int) -> Result:
        """The subtree of the internal node `node` at `path` after the writes
        `_batch[lo:hi]`, all under `path`."""
        batch = self._batch
        if hi - lo == 1 and batch[lo][1] is not None:
            return self._one(self, version, path, node, batch[lo])
        changed = self._changed_children(version, path, node, lo, hi)
        if not changed:
            return False
        self._drop(node[VERSION], path)
        bitmap, leaves = node[BITMAP], node[LEAVES]
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
            return self._lift(node, path, nibble)
        hashes = list(split_hashes(node[0]))
        versions = list(node[CHILD:])
        return self._finish(version, path, (hashes, versions, bitmap, leaves), changed)

    def _lift(self, node: Branch, path: str, nibble: int) -> Item:
        """The unchanged leaf child `nibble` of `node` (at `path`), read to move up to its
        parent's place (its other children gone)."""
        child_version, child_path = node[CHILD + nibble], path + _HEX[nibble]
        only = self._leaf(child_version, child_path, child_hash(node[0], nibble))
        self._drop(child_version, child_path)
        return (only.path, only.hash, only.key, only.value, True)

    def _changed_children(
        self, version: int, path: str, node: Branch, lo: int, hi: int
    ) -> list[tuple[int, Result]]:
        """The children of `node` (at `path`) that the writes `_batch[lo:hi]` change, each as
        it is now."""
        batch, paths, bitmap = self._batch, self._paths, node[BITMAP]
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
            child_path = path + char
            placed: Result
            if bitmap & bit:
                placed = self._changed_child(
                    version, child_path, nibble, node, start=start, stop=stop
                )
            elif stop == start + 1:
                # An empty child and one write: its leaf, if it sets the key.
                placed = batch[start] if batch[start][1] is not None else False
            else:
                # An empty child: the new keys under it, alone.
                written = [item for item in batch[start:stop] if item[1] is not None]
                placed = self._build(version, child_path, written) if written else False
            if placed is not False:
                changed.append((nibble, placed))
            start = stop
        return changed

    def _changed_child(
        self, version: int, child_path: str, nibble: int, node: Branch, *, start: int, stop: int
    ) -> Result:
        """The non-empty child `nibble` of `node`, at `child_path`, after the writes
        `_batch[start:stop]`."""
        # The child's hash is sliced out only where it is needed (a cached child is not
        # checked again; a leaf's new hash is compared in place).
        child_version = node[CHILD + nibble]
        item = self._batch[start]
        if not node[LEAVES] & 1 << nibble:
            child = self._cache.get(child_path)
            if child is None or child[VERSION] != child_version:
                child = self._internal(child_version, child_path, child_hash(node[0], nibble))
            else:
                self.cache_hits += 1
            if stop == start + 1 and item[1] is not None:
                return self._one(self, version, child_path, child, item)
            return self._update(version, child_path, child, start, stop)
        if stop == start + 1 and item[4]:
            # A present key under a leaf child is that leaf's key: replaced unread.
            if item[1] is not None and node[0].startswith(item[1], SLOTS[nibble]):
                return False
            self._stale.append(_node_key(NodeKey, (child_version, child_path)))
            return None if item[1] is None else item
        return self._replace_leaf(
            version,
            (child_version, child_path),
            child_hash(node[0], nibble),
            self._batch[start:stop],
        )

    def _update_one(self, version: int, path: str, node: Branch, item: Item) -> Result:
        """`_update` for one key set (not deleted): down its path, then up again rewriting
        the nodes passed (the common case below the top levels of a large tree)."""
        item_path, known = item[0], item[4]
        depth = len(path)
        passed: list[tuple[Branch, str, int]] = [(node, path, NIBBLE[item_path[depth]])]
        cache = self._cache
        # The subtree below the lowest node passed: a leaf to place under it, or the hash of
        # an internal node written at this version.
        top: Item | bytes = item
        while True:
            nibble = passed[-1][2]
            bit = 1 << nibble
            depth += 1
            if not node[BITMAP] & bit:
                break
            child_version = node[CHILD + nibble]
            child_path = item_path[:depth]
            if node[LEAVES] & bit:
                if known:
                    # The key's own leaf: replaced without being read (unless unchanged).
                    if node[0].startswith(item[1], SLOTS[nibble]):
                        return False
                    self._stale.append(_node_key(NodeKey, (child_version, child_path)))
                    break
                digest = child_hash(node[0], nibble)
                placed = self._replace_leaf(version, (child_version, child_path), digest, [item])
                if placed is False:
                    return False
                assert placed is not None
                top = placed
                break
            child = cache.get(child_path)
            if child is None or child[VERSION] != child_version:
                child = self._internal(child_version, child_path, child_hash(node[0], nibble))
            else:
                self.cache_hits += 1
            node = child
            passed.append((node, child_path, NIBBLE[item_path[depth]]))
        return self._rewrite_up(version, passed, top)

    def _rewrite_up(
        self, version: int, passed: list[tuple[Branch, str, int]], top: Item | bytes
    ) -> bytes:
        """The nodes `passed` (root side first), each rewritten over the new subtree below
        (`top`); the hash of the highest."""
        nodes, stale, cache, rewrite = self._nodes, self._stale, self._cache, self._rewrite_node
        leaf = top if isinstance(top, tuple) else None
        for node, path, nibble in reversed(passed):
            stale.append(_node_key(NodeKey, (node[VERSION], path)))
            cache.pop(path, None)
            if leaf is not None:
                nodes[_node_key(NodeKey, (version, path + _HEX[nibble]))] = encode_record(
                    (LEAF_TAG, leaf[2], leaf[3])
                )
                branch, top, data = rewrite(node, nibble, leaf[1], version, True)  # type: ignore[arg-type]
                leaf = None
            else:
                branch, top, data = rewrite(node, nibble, top, version, False)  # type: ignore[arg-type]
            nodes[_node_key(NodeKey, (version, path))] = data
            if path:
                cache[path] = branch
            else:
                self._remember_root(version, branch)
        if len(cache) > self._cache_max:
            self._evict()
        assert isinstance(top, bytes)
        return top

    def _rewrite_node(
        self, node: Branch, nibble: int, digest: bytes, version: int, leaf: bool
    ) -> tuple[Branch, bytes, bytes]:
        """`node` with child `nibble` replaced by a leaf (`leaf`) or an internal node hashing
        to `digest`, written at `version`: the node, its hash and its encoding
        (`_jmt_native.rewrite`)."""
        bit = 1 << nibble
        slots = list(node)
        leaves = slots[LEAVES] = node[LEAVES] | bit if leaf else node[LEAVES] & ~bit
        offset = SLOTS[nibble]
        hashed = node[0]
        hashed = slots[0] = hashed[:offset] + digest + hashed[offset + HASH_SIZE :]
        bitmap = slots[BITMAP] = node[BITMAP] | bit
        digest = slots[HASH] = self._new(hashed).digest()
        slots[VERSION] = slots[CHILD + nibble] = version
        branch = tuple(slots)
        if bitmap == BITMAP_MAX:
            # A full node's encoding, written out (the common case near the top).
            data = encode_record(
                (INTERNAL_TAG, bitmap, leaves, branch[CHILD:], hashed[DOMAIN_SIZE:])
            )
        else:
            data = encode_branch(branch)
        return branch, digest, data

    def _replace_leaf(
        self, version: int, key: tuple[int, str], digest: bytes, writes: list[Item]
    ) -> Result:
        """The subtree of the leaf at `key` (version, path; hashing to `digest`) after
        `writes`; the leaf is read only when it must move (a new key joins it)."""
        own: Item | None = None
        for item in writes:
            if item[4] is None:
                # Which keys were present is not known: read the leaf.
                return self._update_leaf(version, key, self._leaf(*key, digest), writes)
            if item[4]:
                own = item
        if own is None:
            # Only new keys (and deletions of absent ones): the leaf stays, beside them.
            joining = [item for item in writes if item[1] is not None]
            if not joining:
                return False
            leaf = self._leaf(*key, digest)
            self._drop(*key)
            joining.append((leaf.path, leaf.hash, leaf.key, leaf.value, True))
            joining.sort(key=by_path)
            return self._build(version, key[1], joining)
        # A present key under a leaf child is that leaf's key: no other key lives there.
        others = [item for item in writes if item is not own and item[1] is not None]
        if not others:
            if own[1] == digest:
                return False
            self._drop(*key)
            return None if own[1] is None else own
        self._drop(*key)
        if own[1] is not None:
            others.append(own)
            others.sort(key=by_path)
        return self._build(version, key[1], others)

    def _update_leaf(
        self, version: int, key: tuple[int, str], leaf: Leaf, writes: list[Item]
    ) -> Result:
        """The subtree of `leaf` (stored at `key`, version and path) after `writes`."""
        own: Item | None = (leaf.path, leaf.hash, leaf.key, leaf.value, True)
        others: list[Item] = []
        for item in writes:
            if item[0] == leaf.path:
                own = item if item[1] is not None else None
            elif item[1] is not None:
                others.append(item)
        if not others and own is not None and own[1] == leaf.hash:
            return False
        self._drop(*key)
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
        empty = self._empty
        depth = len(path)
        if len(leaves) == 2 and leaves[0][0][depth] != leaves[1][0][depth]:
            # Two leaves parting at the next nibble (a new key beside a leaf, mostly).
            first, second = NIBBLE[leaves[0][0][depth]], NIBBLE[leaves[1][0][depth]]
            bits = 1 << first | 1 << second
            pair: list[tuple[int, Result]] = [(first, leaves[0]), (second, leaves[1])]
            return self._finish(version, path, ([empty] * RADIX, [0] * RADIX, bits, bits), pair)
        changed: list[tuple[int, Result]] = []
        bitmap = leaf_bits = 0
        for nibble, group in _groups(leaves, len(path)):
            bitmap |= 1 << nibble
            if len(group) == 1:
                leaf_bits |= 1 << nibble
                changed.append((nibble, group[0]))
            else:
                changed.append((nibble, self._build(version, path + _HEX[nibble], group)))
        return self._finish(
            version, path, ([empty] * RADIX, [0] * RADIX, bitmap, leaf_bits), changed
        )

    def _finish(
        self,
        version: int,
        path: str,
        slots: tuple[list[bytes], list[int], int, int],
        changed: list[tuple[int, Result]],
    ) -> bytes:
        """The internal node at `path`, written at this version: its `slots` (hashes and
        versions, copies of the old node's or empty; the bitmaps of children and of leaves as
        they are now) with the `changed` children put in. Its hash."""
        hashes, versions, bitmap, leaves = slots
        assert 0 < bitmap <= BITMAP_MAX
        empty = self._empty
        nodes = self._nodes
        for nibble, placed in changed:
            if placed is None:
                hashes[nibble] = empty
                versions[nibble] = 0
                continue
            if isinstance(placed, tuple):
                nodes[_node_key(NodeKey, (version, path + _HEX[nibble]))] = encode_record(
                    (LEAF_TAG, placed[2], placed[3])
                )
                hashes[nibble] = placed[1]  # type: ignore[assignment]
            else:
                assert placed is not False
                hashes[nibble] = placed
            versions[nibble] = version
        hashed = INTERNAL_DOMAIN + b"".join(hashes)
        digest = self._new(hashed).digest()
        node: Branch = (hashed, bitmap, leaves, digest, version, *versions)
        nodes[_node_key(NodeKey, (version, path))] = encode_branch(node, hashes)
        if path:
            self._remember(path, node)
        else:
            self._remember_root(version, node)
        return digest

    def _drop(self, version: int, path: str) -> None:
        """The node at `path` written at `version` is stale from this version on: list it,
        and forget it."""
        self._stale.append(_node_key(NodeKey, (version, path)))
        cached = self._cache.get(path)
        if cached is not None and cached[VERSION] == version:
            del self._cache[path]


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
