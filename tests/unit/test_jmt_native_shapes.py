"""The C split of a block's writes (`_jmt_update.c`, `_jmt_native.update`) against the Python
it replaces (`TreeWriter._update`), on the shapes the first two-tree test rarely reaches: keys
whose paths share long prefixes (found by hashing, the tree's nibbles taken as they come),
large batches, whole trees deleted and written again, small caches, and the `present` hint
given or not; and a callback's malformed result, which must raise, never crash the process.
"""

from __future__ import annotations

import functools
import hashlib
import random
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

from consortia.crypto import suite
from consortia.execution import _jmt_native
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore, TreeUpdate
from consortia.execution.jmt_nodes import encode_node
from consortia.types.state_proof import KEY_DOMAIN

INTL = suite("intl")


@functools.cache
def colliding_keys(prefix_nibbles: int, groups: int, *, tries: int = 150_000) -> tuple[bytes, ...]:
    """Keys in `groups` groups (or fewer), the paths in a group sharing their first
    `prefix_nibbles` nibbles."""
    buckets: dict[str, list[bytes]] = defaultdict(list)
    for index in range(tries):
        key = b"c%d" % index
        buckets[hashlib.sha256(KEY_DOMAIN + key).hexdigest()[:prefix_nibbles]].append(key)
    shared = [keys for keys in buckets.values() if len(keys) > 1]
    return tuple(key for keys in shared[:groups] for key in keys)


def _roots(tree: JellyfishTree) -> list[tuple[int, object]]:
    # A leaf root is a fresh object on each path: compare it by its encoding.
    return [
        (version, node if isinstance(node, tuple) else encode_node(node))
        for version, node in tree._roots.items()
    ]


class TwoTrees:
    """A tree on the C path and one on the Python path, over their own stores."""

    def __init__(self, cache_nodes_max: int) -> None:
        self.stores = MemoryNodeStore(), MemoryNodeStore()
        self.trees = tuple(
            JellyfishTree(INTL, store.read, cache_nodes_max=cache_nodes_max, native=native)
            for store, native in zip(self.stores, (True, False), strict=True)
        )
        assert self.trees[0]._many is _jmt_native.update
        assert self.trees[1]._many is not _jmt_native.update
        self.model: dict[bytes, bytes] = {}
        self.version = 0

    def apply(self, writes: dict[bytes, bytes | None], *, hint: bool) -> None:
        present = set(self.model) if hint else None
        native, python = self.trees
        updates: list[TreeUpdate] = [
            tree.apply(self.version, writes, present=present) for tree in self.trees
        ]
        assert updates[0].root == updates[1].root
        assert list(updates[0].nodes.items()) == list(updates[1].nodes.items())
        assert updates[0].stale == updates[1].stale
        assert list(native._cache.items()) == list(python._cache.items())
        assert _roots(native) == _roots(python)
        assert (native.cache_hits, native.cache_misses) == (python.cache_hits, python.cache_misses)
        for store, update in zip(self.stores, updates, strict=True):
            store.write(update)
        for key, value in writes.items():
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value
        self.version += 1


@pytest.mark.parametrize("cache_nodes_max", [1, 2, 4, 10])
@pytest.mark.parametrize("prefix_nibbles", [3, 5, 6])
def test_both_paths_agree_on_keys_sharing_long_prefixes(
    cache_nodes_max: int, prefix_nibbles: int
) -> None:
    rng = random.Random(cache_nodes_max * 100 + prefix_nibbles)
    keys = list(colliding_keys(prefix_nibbles, 40))
    assert len(keys) >= 80
    rng.shuffle(keys)
    both = TwoTrees(cache_nodes_max)
    both.apply({key: b"first" for key in keys[:2]}, hint=False)
    for round_ in range(40):
        writes: dict[bytes, bytes | None] = {}
        present = list(both.model)
        for _ in range(rng.choice([1, 2, 3, 8, 30])):
            roll = rng.random()
            if present and roll < 0.3:
                writes[rng.choice(present)] = rng.randbytes(rng.randrange(0, 20))
            elif present and roll < 0.4:
                key = rng.choice(present)
                writes[key] = both.model[key]  # the same value again
            elif present and roll < 0.65:
                writes[rng.choice(present)] = None
            elif roll < 0.7:
                writes[rng.choice(keys)] = None  # maybe absent
            else:
                writes[rng.choice(keys)] = rng.randbytes(rng.randrange(0, 20))
        if round_ % 9 == 8 and len(both.model) > 2:
            # All but one or two keys go: the survivors move up through `_lift`.
            keep = set(rng.sample(present, rng.choice([1, 2])))
            writes = {key: None for key in present if key not in keep}
        both.apply(writes, hint=round_ % 3 != 0)


@pytest.mark.parametrize("hint", [False, True])
def test_both_paths_agree_on_large_batches_down_to_an_empty_tree_and_back(hint: bool) -> None:
    rng = random.Random(11 + hint)
    keys = [*colliding_keys(5, 300)] + [rng.randbytes(6) for _ in range(2500)]
    both = TwoTrees(cache_nodes_max=4)
    both.apply({key: b"v" for key in keys[:2]}, hint=hint)
    both.apply({key: rng.randbytes(8) for key in keys}, hint=hint)  # thousands at once
    for _ in range(2):
        present = list(both.model)
        writes: dict[bytes, bytes | None] = {key: None for key in present[: len(present) // 2]}
        writes.update({key: b"w" for key in present[len(present) // 2 :: 3]})
        both.apply(writes, hint=hint)
    both.apply({key: None for key in both.model}, hint=hint)
    assert both.model == {} and both.trees[0].root_hash() == both.trees[1].root_hash()
    both.apply({key: b"again" for key in keys[:3000]}, hint=hint)
    both.apply({key: None for key in keys[1:3000]}, hint=hint)  # one key left: a leaf root
    both.apply({key: b"back" for key in keys[:1500]}, hint=hint)
    assert len(both.model) == 1500


_CALLBACK_RESULT = """
import hashlib
from consortia.crypto import suite
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore
from consortia.types.state_proof import KEY_DOMAIN

def key_under(nibble, skip=()):
    index = 0
    while True:
        key = b"k%d" % index
        if hashlib.sha256(KEY_DOMAIN + key).hexdigest()[0] == nibble and key not in skip:
            return key
        index += 1

class Tree(JellyfishTree):
    malformed = False

    def _build(self, version, path, leaves):
        return RESULT if self.malformed else super()._build(version, path, leaves)

store = MemoryNodeStore()
tree = Tree(suite("intl"), store.read, cache_nodes_max=8, native=NATIVE)
store.write(tree.apply(0, {key_under("a"): b"1", key_under("b"): b"2"}))
first = key_under("c")
tree.malformed = True
try:
    # Two new keys under the root's empty child c: `_build`'s result is placed there.
    tree.apply(1, {first: b"3", key_under("c", (first,)): b"4"})
except Exception as error:
    print("raised", type(error).__name__)
"""


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("result", ["()", "(bytes(32),)", "('p', bytes(32))"])
def test_a_short_tuple_from_a_callback_raises_and_does_not_crash(native: bool, result: str) -> None:
    """`finish` reads a placed leaf's hash, key and value (items 1 to 3): a shorter tuple from
    `_build`, `_replace_leaf` or `_lift` must raise as the Python does (IndexError), not read
    past the tuple. Run apart: a crash would take the test session with it."""
    script = _CALLBACK_RESULT.replace("RESULT", result).replace("NATIVE", str(native))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("raised "), done.stdout
