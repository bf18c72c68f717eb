"""Committed key-value state: a bucketed Merkle root and a bounded history for past queries.

Keys and values are bytes. Keys are spread over 256 buckets by the first byte of their hash;
each bucket's root is a Merkle root over its (key, value) leaves in key order, and the state
root is the Merkle root of the bucket roots. Committing a block recomputes only the buckets it
touched. Every value a key had within the last `history_heights_max` heights can be read back
(`get(key, height)`), which is how queries at a past height and supervision queries work.

Owns the committed values, their Merkle roots and their history. Must never be handed to a
contract (a block being executed reads through the read-only `current` view), and stays pure
and deterministic: no clock, no randomness, no I/O. The node persists what `apply` returns;
this module keeps everything in memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from consortia.crypto import Suite
from consortia.errors import ConsortiaError
from consortia.types.signing import merkle_root

BUCKETS = 256
LEAF_DOMAIN = b"consortia/state-leaf/v1\x00"


class HeightUnavailableError(ConsortiaError):
    code = "height_unavailable"


@dataclass(frozen=True, slots=True)
class StateProof:
    """Inclusion of (key, value) under a state root: the bucket's leaves and the bucket roots.

    Verifying recomputes the bucket root from `bucket_leaves` and the state root from
    `bucket_roots`; a value absent from its bucket's leaves is proven absent.
    """

    key: bytes
    value: bytes | None
    bucket: int
    bucket_leaves: tuple[bytes, ...]
    bucket_roots: tuple[bytes, ...]


class StateTree:
    def __init__(self, suite: Suite, *, history_heights_max: int = 100_000) -> None:
        assert history_heights_max >= 1
        self._suite = suite
        self._values: dict[bytes, bytes] = {}
        # The current values, read-only: what a block being executed reads through.
        self.current: Mapping[bytes, bytes] = MappingProxyType(self._values)
        self._bucket_keys: list[list[bytes]] = [[] for _ in range(BUCKETS)]  # sorted
        self._bucket_roots: list[bytes] = [merkle_root(suite, [])] * BUCKETS
        self._history: dict[bytes, tuple[list[int], list[bytes | None]]] = {}
        # The oldest height whose values `_history` can give (a restored tree knows nothing
        # before the height it was restored at). Invariant: at most `height`.
        self._history_floor = 0
        self._history_heights_max = history_heights_max
        self.height = 0
        self.root = merkle_root(suite, self._bucket_roots)

    def __len__(self) -> int:
        return len(self._values)

    def bucket_of(self, key: bytes) -> int:
        return self._suite.hash(key)[0]

    def get(self, key: bytes, height: int | None = None) -> bytes | None:
        if height is None or height >= self.height:
            return self._values.get(key)
        if height < self.height - self._history_heights_max:
            raise HeightUnavailableError(
                f"height {height} is older than the {self._history_heights_max} heights kept"
            )
        if height < self._history_floor:
            raise HeightUnavailableError(
                f"height {height} is before {self._history_floor}, where this node's state"
                " history starts (it restarted there)"
            )
        record = self._history.get(key)
        if record is None:
            return None
        heights, values = record
        index = bisect.bisect_right(heights, height) - 1
        return values[index] if index >= 0 else None

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Current keys starting with `prefix`, in order (for listing queries; not hot)."""
        return sorted(key for key in self._values if key.startswith(prefix))

    def initialise(self, writes: dict[bytes, bytes]) -> bytes:
        """Load the genesis state, as height 0; return its root."""
        assert self.height == 0 and not self._values, "genesis is loaded once, into nothing"
        self._apply_writes(0, dict(writes))
        return self.root

    def restore(self, height: int, values: dict[bytes, bytes]) -> bytes:
        """Load the committed values of `height` (from a node's store, after a restart) into
        an empty tree; return the root, which the caller checks against the stored one. No
        history before `height` is kept."""
        assert self.height == 0 and not self._values, "state is restored once, into nothing"
        self._apply_writes(height, dict(values))
        self._history.clear()
        self._history_floor = height
        return self.root

    def apply(self, height: int, writes: dict[bytes, bytes | None]) -> bytes:
        """Commit a block's writes (None deletes) at `height`; return the new state root."""
        assert height == self.height + 1, "blocks are applied in order"
        return self._apply_writes(height, writes)

    def _apply_writes(self, height: int, writes: dict[bytes, bytes | None]) -> bytes:
        touched: set[int] = set()
        for key in sorted(writes):
            value = writes[key]
            bucket = self.bucket_of(key)
            keys = self._bucket_keys[bucket]
            present = key in self._values
            if value is None:
                if not present:
                    continue
                del self._values[key]
                keys.pop(bisect.bisect_left(keys, key))
            else:
                if not present:
                    bisect.insort(keys, key)
                self._values[key] = value
            touched.add(bucket)
            self._remember(height, key, value)
        for bucket in sorted(touched):
            self._bucket_roots[bucket] = merkle_root(self._suite, self._leaves(bucket))
        self.height = height
        self.root = merkle_root(self._suite, self._bucket_roots)
        return self.root

    def prove(self, key: bytes) -> StateProof:
        bucket = self.bucket_of(key)
        return StateProof(
            key=key,
            value=self._values.get(key),
            bucket=bucket,
            bucket_leaves=tuple(self._leaves(bucket)),
            bucket_roots=tuple(self._bucket_roots),
        )

    def _leaves(self, bucket: int) -> list[bytes]:
        return [self.leaf(key, self._values[key]) for key in self._bucket_keys[bucket]]

    def leaf(self, key: bytes, value: bytes) -> bytes:
        return self._suite.hash(
            LEAF_DOMAIN + len(key).to_bytes(4, "big") + key + self._suite.hash(value)
        )

    def _remember(self, height: int, key: bytes, value: bytes | None) -> None:
        heights, values = self._history.setdefault(key, ([], []))
        heights.append(height)
        values.append(value)
        horizon = height - self._history_heights_max
        # Keep the newest entry at or below the horizon: it answers queries at the horizon.
        drop = bisect.bisect_right(heights, horizon) - 1
        if drop > 0:
            del heights[:drop]
            del values[:drop]


def verify_state_proof(suite: Suite, root: bytes, proof: StateProof) -> bool:
    """True when `proof` shows `proof.key` has `proof.value` (or is absent) under `root`."""
    if len(proof.bucket_roots) != BUCKETS or suite.hash(proof.key)[0] != proof.bucket:
        return False
    if merkle_root(suite, list(proof.bucket_roots)) != root:
        return False
    if merkle_root(suite, list(proof.bucket_leaves)) != proof.bucket_roots[proof.bucket]:
        return False
    if proof.value is None:
        # Absence is only proven if no leaf can be this key with any value; leaves hide keys,
        # so absence proofs need the keys themselves (a later issue); refuse to claim it.
        return False
    leaf = suite.hash(
        LEAF_DOMAIN + len(proof.key).to_bytes(4, "big") + proof.key + suite.hash(proof.value)
    )
    return leaf in proof.bucket_leaves
