"""The state tree's write-path shortcuts change no byte: the remembered key paths
(`TreeWriter._key_paths`) stay within their bound and give the roots and nodes a tree without
them writes, a wrong remembered entry would be caught, and each bitmap's struct that picks a
sparse node's hashes encodes exactly what the record encoder does.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.crypto import Suite, suite
from consortia.execution import jmt_nodes
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore, TreeUpdate
from consortia.execution.jmt_nodes import decode_node, encode_branch, hasher
from consortia.execution.jmt_write import KEY_PATHS_MAX
from consortia.types.encoding import encode
from consortia.types.state_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    LEAF_DOMAIN,
    RADIX,
    placeholder,
)
from tests.unit.test_jmt_reference import reference_root

INTL, GM = suite("intl"), suite("gm")
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = st.binary(min_size=1, max_size=2)
WRITES = st.dictionaries(KEYS, st.none() | st.binary(max_size=6), max_size=30)


def tree_of(crypto: Suite, key_paths_max: int) -> tuple[JellyfishTree, MemoryNodeStore]:
    store = MemoryNodeStore()
    tree = JellyfishTree(crypto, store.read)
    tree._key_paths_max = key_paths_max
    return tree, store


def write(
    tree: JellyfishTree,
    store: MemoryNodeStore,
    writes: dict[bytes, bytes | None],
    model: dict[bytes, bytes],
) -> TreeUpdate:
    version = 0 if tree.version is None else tree.version + 1
    update = tree.apply(version, writes, dict(model))
    store.write(update)
    for key, value in writes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return update


def test_the_default_bound_is_the_documented_one() -> None:
    tree, _ = tree_of(INTL, KEY_PATHS_MAX)
    assert JellyfishTree(INTL, MemoryNodeStore().read)._key_paths_max == KEY_PATHS_MAX == 1 << 16
    assert tree._key_paths == {}


@PROPERTY
@given(
    st.lists(WRITES, min_size=1, max_size=6),
    st.sampled_from([1, 2, 5]),
    st.sampled_from(["intl", "gm"]),
)
def test_a_small_key_path_cache_stays_bounded_and_changes_nothing_written(
    batches: list[dict[bytes, bytes | None]], bound: int, name: str
) -> None:
    """A cache emptied every few keys writes the nodes, stale lists and roots of one that
    never empties, and each root is the reference root."""
    crypto = suite(name)
    small, small_store = tree_of(crypto, bound)
    large, large_store = tree_of(crypto, KEY_PATHS_MAX)
    small_model: dict[bytes, bytes] = {}
    large_model: dict[bytes, bytes] = {}
    for writes in batches:
        got = write(small, small_store, writes, small_model)
        expected = write(large, large_store, writes, large_model)
        assert len(small._key_paths) <= bound
        assert got.root == expected.root == reference_root(crypto, small_model)
        assert got.nodes == expected.nodes and got.stale == expected.stale


def test_every_remembered_path_is_the_keys_own_hash_under_each_suite() -> None:
    rng = random.Random(5)
    keys = [rng.randbytes(rng.randint(1, 40)) for _ in range(300)]
    for crypto in (INTL, GM):
        tree, store = tree_of(crypto, KEY_PATHS_MAX)
        write(tree, store, {key: b"v" for key in keys}, {})
        assert set(tree._key_paths) == set(keys)
        for key, (path, leaf_prefix) in tree._key_paths.items():
            digest = crypto.hash(KEY_DOMAIN + key)
            assert (path, leaf_prefix) == (digest.hex(), LEAF_DOMAIN + digest)


def test_a_cache_full_of_other_keys_is_emptied_before_it_grows() -> None:
    tree, store = tree_of(INTL, 64)
    model: dict[bytes, bytes] = {}
    for round_ in range(5):
        write(tree, store, {bytes([round_, n]): b"x" for n in range(50)}, model)
        assert len(tree._key_paths) <= 64
    assert tree.root_hash() == reference_root(INTL, model)


def test_a_wrong_remembered_path_would_be_caught() -> None:
    """Weakening the cache (an entry that is not the key's hash) changes the root, so the
    comparisons above can fail."""
    tree, store = tree_of(INTL, KEY_PATHS_MAX)
    model: dict[bytes, bytes] = {}
    write(tree, store, {b"a": b"1", b"b": b"2", b"c": b"3"}, model)
    other = tree._key_paths[b"b"]
    tree._key_paths[b"a"] = other
    update = write(tree, store, {b"a": b"9"}, model)
    assert update.root != reference_root(INTL, model)


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(1, BITMAP_MAX), st.integers(0, BITMAP_MAX), st.randoms(use_true_random=False))
def test_a_sparse_node_encodes_as_its_record(bitmap: int, leaves: int, rnd: random.Random) -> None:
    """Every bitmap's struct picks the hashes of the children present: the encoding is the
    record encoder's, and it decodes back to the node."""
    leaves &= bitmap
    empty = placeholder(INTL)
    hashes = [rnd.randbytes(HASH_SIZE) if bitmap >> n & 1 else empty for n in range(RADIX)]
    versions = [rnd.randint(1, 1 << 40) if bitmap >> n & 1 else 0 for n in range(RADIX)]
    hashed = INTERNAL_DOMAIN + b"".join(hashes)
    node = (hashed, bitmap, leaves, hasher(INTL)(hashed).digest(), 7, *versions)
    present = jmt_nodes.nibbles(bitmap)
    record = jmt_nodes._InternalRecord(
        bitmap, leaves, [versions[n] for n in present], b"".join(hashes[n] for n in present)
    )
    data = encode_branch(node)
    assert data == encode(record)
    decoded = decode_node(INTL, data)
    assert decoded.branch(7) == node  # type: ignore[union-attr]
    assert len(jmt_nodes.PICKERS) <= BITMAP_MAX
