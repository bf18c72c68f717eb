"""The engine's committed state: the current values in memory, every retained height in the
state tree (`jmt.py`).

Blocks execute against `current`, a read-only view of a dict of the latest committed values:
execution never walks the tree. Committing a block writes its writes into the dict and into
the tree as the next version; the state root is the tree's root. Reads at an earlier height,
and every proof, walk the tree at that height's version.

History is bounded: after each commit the oldest height kept is `history_heights` before the
latest (never moving back), and reads or proofs below it fail with `HeightUnavailableError`.
Where the tree's nodes live is injected: `nodes` reads a node the tree does not hold (the
node's store), and whoever injected it persists each commit's `last_update` (nodes written,
nodes made stale) and deletes stale nodes up to `oldest_height`. Without `nodes` the nodes
stay in a `MemoryNodeStore` that this class writes and prunes itself (simulator, tests).

Owns the current values, the tree and the retention window. Must never be handed to a
contract (a block being executed reads through the read-only `current` view), and stays pure
and deterministic: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from consortia.crypto import Suite
from consortia.execution.jmt import CACHE_NODES_DEFAULT, JellyfishTree
from consortia.execution.jmt_nodes import (
    MemoryNodeStore,
    NodeKey,
    NodeReader,
    NodesReader,
    StateCorruptError,
    TreeUpdate,
)
from consortia.types.state_proof import (
    STATE_HISTORY_HEIGHTS_DEFAULT,
    STATE_HISTORY_HEIGHTS_MAX,
    STATE_HISTORY_HEIGHTS_MIN,
    HeightUnavailableError,
    SparseMerkleProof,
    placeholder,
)

# How many heights of history are kept by default, and the bounds of the setting.
HISTORY_HEIGHTS_DEFAULT: Final = STATE_HISTORY_HEIGHTS_DEFAULT
HISTORY_HEIGHTS_MIN: Final = STATE_HISTORY_HEIGHTS_MIN
HISTORY_HEIGHTS_MAX: Final = STATE_HISTORY_HEIGHTS_MAX


class CommittedState:
    def __init__(
        self,
        suite: Suite,
        nodes: NodeReader | None = None,
        *,
        history_heights: int = HISTORY_HEIGHTS_DEFAULT,
        cache_nodes_max: int = CACHE_NODES_DEFAULT,
    ) -> None:
        assert HISTORY_HEIGHTS_MIN <= history_heights <= HISTORY_HEIGHTS_MAX
        self._suite = suite
        self._memory = MemoryNodeStore() if nodes is None else None
        self._reader: NodeReader = self._memory.read if self._memory is not None else nodes  # type: ignore[assignment]
        # The last update's nodes, until the next commit: readable even before the caller
        # has stored them.
        self._unstored: dict[NodeKey, bytes] = {}
        self._cache_nodes_max = cache_nodes_max
        self._tree = JellyfishTree(suite, self._read, cache_nodes_max=cache_nodes_max)
        self._values: dict[bytes, bytes] = {}
        # The current values, read-only: what a block being executed reads through.
        self.current: Mapping[bytes, bytes] = MappingProxyType(self._values)
        self.history_heights = history_heights
        self.height = 0
        self.oldest_height = 0
        self.root = placeholder(suite)
        self.last_update: TreeUpdate | None = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def tree(self) -> JellyfishTree:
        return self._tree

    # ------------------------------------------------------------------ reads

    def get(self, key: bytes, height: int | None = None) -> bytes | None:
        """The value of `key` at `height` (the latest when None or later);
        HeightUnavailableError below `oldest_height`."""
        if height is None or height >= self.height:
            return self._values.get(key)
        return self._tree.get(key, height)

    def prove(
        self, key: bytes, height: int | None = None
    ) -> tuple[int, bytes | None, SparseMerkleProof, bytes]:
        """(height, value, proof, root) of `key` at `height` (the latest when None)."""
        at = self.height if height is None else height
        value, proof = self._tree.get_with_proof(key, at)
        return at, value, proof, self._tree.root_hash(at)

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Current keys starting with `prefix`, in order (for listing queries; not hot)."""
        return sorted(key for key in self._values if key.startswith(prefix))

    # ------------------------------------------------------------------ writes

    def initialise(self, writes: Mapping[bytes, bytes]) -> bytes:
        """Load the genesis state, as height 0; return its root."""
        assert self._tree.version is None and not self._values, "genesis is loaded once"
        return self._commit(0, dict(writes))

    def apply(self, height: int, writes: Mapping[bytes, bytes | None]) -> bytes:
        """Commit a block's writes (None deletes) at `height`; return the new state root."""
        assert height == self.height + 1, "blocks are applied in order"
        return self._commit(height, writes)

    def restore(
        self,
        height: int,
        values: dict[bytes, bytes] | None,
        root: bytes,
        oldest_height: int,
        read_many: NodesReader | None = None,
    ) -> None:
        """Reopen committed state after a restart: the tree at `height` from the stored
        nodes; the current values as given, or (None) read from the tree's leaves as stored
        (`JellyfishTree.stored_items`, through `read_many` when given). Nothing is
        re-executed; a tree whose root is not the stored `root`, or a node missing below it,
        is a damaged store (StateCorruptError)."""
        assert self._tree.version is None and not self._values, "state is restored once"
        assert 0 <= oldest_height <= height
        tree = JellyfishTree(
            self._suite,
            self._read,
            version=height,
            oldest_version=oldest_height,
            cache_nodes_max=self._cache_nodes_max,
        )
        try:
            found = tree.root_hash()
        except HeightUnavailableError:
            raise StateCorruptError(
                f"the store holds no state tree at height {height} (written before the state"
                " tree was kept, or damaged)"
            ) from None
        if found != root:
            raise StateCorruptError(
                f"the stored state tree at height {height} has root {found.hex()}, not the"
                f" stored state root {root.hex()}"
            )
        self._tree = tree
        if values is None:
            values = dict(tree.stored_items(read_many=read_many))
        self._values.update(values)
        self.height, self.oldest_height, self.root = height, oldest_height, root

    def _commit(self, height: int, writes: Mapping[bytes, bytes | None]) -> bytes:
        update = self._tree.apply(height, writes, self._values)
        values = self._values
        if None in writes.values():
            for key, value in writes.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
        else:
            # No deletion (a block of transfers): one update, in C.
            values.update(writes)  # type: ignore[arg-type]
        self.height, self.root, self.last_update = height, update.root, update
        oldest = max(self.oldest_height, height - self.history_heights)
        if oldest != self.oldest_height:
            self._tree.retain_from(oldest)
            self.oldest_height = oldest
        if self._memory is not None:
            self._memory.write(update)
            self._memory.prune(oldest)
        else:
            self._unstored = update.nodes
        return update.root

    def _read(self, key: NodeKey) -> bytes | None:
        data = self._unstored.get(key)
        return self._reader(key) if data is None else data
