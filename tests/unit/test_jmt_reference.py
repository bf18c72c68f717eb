"""The state tree's write path against a reference: every root equals the root computed
straight from the definition (`types/state_proof.py`) with the suite's own hash, under both
suites; the nodes and stale lists a fixed history writes are pinned byte for byte (so neither
the encoding nor the layout can drift); reads at older versions between writes change nothing
the writes produce; and the tree's hashlib shortcut is the suite's hash or is not taken.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.crypto import Suite, suite
from consortia.crypto.intl import IntlSuite
from consortia.execution import jmt_nodes
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore, TreeUpdate, verify_proof
from consortia.execution.jmt_nodes import hasher
from consortia.types.state_proof import (
    INTERNAL_DOMAIN,
    KEY_DOMAIN,
    LEAF_DOMAIN,
    RADIX,
    VALUE_DOMAIN,
    placeholder,
)

INTL, GM = suite("intl"), suite("gm")
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Small keys collide in their first nibbles often, so paths share long prefixes.
KEYS = st.binary(min_size=1, max_size=2)
WRITES = st.dictionaries(KEYS, st.none() | st.binary(max_size=6), max_size=30)


def reference_root(crypto: Suite, state: dict[bytes, bytes]) -> bytes:
    """The root by the definition: a subtree of one key is its leaf, of none the placeholder,
    of more an internal node over its 16 children by the next nibble of the key hashes."""
    hash_of = crypto.hash
    entries = sorted((hash_of(KEY_DOMAIN + key).hex(), key, value) for key, value in state.items())

    def subtree(items: list[tuple[str, bytes, bytes]], depth: int) -> bytes:
        if not items:
            return placeholder(crypto)
        if len(items) == 1:
            path, _, value = items[0]
            return hash_of(LEAF_DOMAIN + bytes.fromhex(path) + hash_of(VALUE_DOMAIN + value))
        children = [
            subtree([item for item in items if int(item[0][depth], 16) == nibble], depth + 1)
            for nibble in range(RADIX)
        ]
        return hash_of(INTERNAL_DOMAIN + b"".join(children))

    return subtree(entries, 0)


def apply_all(
    tree: JellyfishTree,
    store: MemoryNodeStore,
    writes: dict[bytes, bytes | None],
    model: dict[bytes, bytes],
    *,
    knowing: bool,
) -> TreeUpdate:
    version = 0 if tree.version is None else tree.version + 1
    update = tree.apply(version, writes, dict(model) if knowing else None)
    store.write(update)
    for key, value in writes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return update


@PROPERTY
@given(
    st.lists(WRITES, min_size=1, max_size=6),
    st.sampled_from([1, 2, 7, 65_536]),
    st.booleans(),
    st.sampled_from(["intl", "gm"]),
)
def test_every_root_is_the_reference_root(
    batches: list[dict[bytes, bytes | None]], cache: int, knowing: bool, name: str
) -> None:
    crypto = suite(name)
    store = MemoryNodeStore()
    tree = JellyfishTree(crypto, store.read, cache_nodes_max=cache)
    model: dict[bytes, bytes] = {}
    for writes in batches:
        update = apply_all(tree, store, writes, model, knowing=knowing)
        assert update.root == reference_root(crypto, model)
        assert tree.root_hash() == update.root


def test_large_batches_over_a_large_tree_keep_the_reference_root() -> None:
    """Batches of thousands of writes, most paths passing internal nodes with one write."""
    rng = random.Random(41)
    store = MemoryNodeStore()
    tree = JellyfishTree(INTL, store.read)
    model: dict[bytes, bytes] = {}
    apply_all(
        tree, store, {rng.randbytes(8): rng.randbytes(8) for _ in range(6000)}, model, knowing=True
    )
    for _ in range(3):
        writes: dict[bytes, bytes | None] = {}
        for key in rng.sample(sorted(model), 1500):
            writes[key] = None if rng.random() < 0.2 else rng.randbytes(8)
        writes.update({rng.randbytes(8): rng.randbytes(8) for _ in range(1500)})
        update = apply_all(tree, store, writes, model, knowing=True)
        assert update.root == reference_root(INTL, model)


def history_digest(crypto: Suite, cache: int, *, read_back: bool = False) -> tuple[str, str]:
    """The last root and a digest of every node and stale key of a fixed history (both forms
    of apply, with and without the present keys)."""
    rng = random.Random(2026)
    store = MemoryNodeStore()
    tree = JellyfishTree(crypto, store.read, cache_nodes_max=cache)
    model: dict[bytes, bytes] = {}
    digest = hashlib.sha256()
    root = b""
    for version in range(6):
        writes: dict[bytes, bytes | None] = {}
        for _ in range(300 if version == 0 else 120):
            if model and rng.random() < 0.5:
                key = rng.choice(sorted(model))
                writes[key] = None if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 40))
            else:
                writes[rng.randbytes(rng.randint(1, 12))] = rng.randbytes(rng.randint(0, 40))
        update = apply_all(tree, store, writes, model, knowing=bool(version % 2))
        for key in sorted(update.nodes, key=lambda key: key.to_bytes()):
            digest.update(key.to_bytes() + update.nodes[key])
        for key in sorted(update.stale, key=lambda key: key.to_bytes()):
            digest.update(b"stale" + key.to_bytes())
        root = update.root
        if read_back:
            # Reads and proofs at every version so far, between the writes.
            for old in range(version + 1):
                old_root = tree.root_hash(old)
                for key in list(writes)[:40]:
                    value, proof = tree.get_with_proof(key, old)
                    assert verify_proof(crypto, old_root, key, value, proof)
    return root.hex(), digest.hexdigest()


# What the tree wrote for `history_digest` before its write path was rewritten for speed.
PINNED = {
    "intl": (
        "90362e9ac3f98d38dad2f1802c97644f4671631a5cc43a302b4e359146233d6a",
        "d13c3d926ac5ce02c180cdeb843ece98e8453d950cf488c4979f108a85084d5a",
    ),
    "gm": (
        "6128066468f40dd9d05fd01d50637c52b8b6b59bab5107aa07e05c0b7ee04f42",
        "56b85069c4c089c23c9e3261e4435218adbc67928bbccf1efedffeea6ee980f6",
    ),
}


@pytest.mark.parametrize("name", ["intl", "gm"])
@pytest.mark.parametrize("cache", [2, 65_536])
def test_the_nodes_and_stale_lists_of_a_fixed_history_are_pinned(name: str, cache: int) -> None:
    assert history_digest(suite(name), cache) == PINNED[name]


@pytest.mark.parametrize("cache", [1, 3, 65_536])
def test_reads_at_older_versions_between_writes_change_nothing_written(cache: int) -> None:
    assert history_digest(INTL, cache, read_back=True) == PINNED["intl"]


def test_the_hashlib_shortcut_is_each_suites_hash() -> None:
    rng = random.Random(9)
    for crypto in (INTL, GM):
        new = hasher(crypto)
        for size in (0, 1, 31, 32, 33, 64, 538, 1000):
            data = rng.randbytes(size)
            assert new(data).digest() == crypto.hash(data)


class _RenamedSuite(IntlSuite):
    name = "renamed"


class _OtherHashSuite(IntlSuite):
    """Says it is intl, hashes otherwise: the shortcut must not be taken."""

    def hash(self, data: bytes) -> bytes:
        return hashlib.sha3_256(data).digest()


@pytest.mark.parametrize("crypto", [_RenamedSuite(), _OtherHashSuite()])
def test_a_suite_hashlib_does_not_match_hashes_through_its_own_method(crypto: Suite) -> None:
    new = hasher(crypto)
    assert new is not hashlib.sha256
    assert new(b"abc").digest() == crypto.hash(b"abc")
    state = {bytes([i]): bytes([i]) * 3 for i in range(50)}
    tree = JellyfishTree(crypto, MemoryNodeStore().read)
    assert tree.apply(0, state).root == reference_root(crypto, state)


def test_a_write_after_reads_at_an_older_version_starts_from_the_latest_nodes() -> None:
    """A cold tree that first reads an older version caches that version's nodes; the next
    write must still rewrite the latest version's."""
    rng = random.Random(17)
    store = MemoryNodeStore()
    tree = JellyfishTree(INTL, store.read)
    model: dict[bytes, bytes] = {}
    keys = [rng.randbytes(6) for _ in range(400)]
    apply_all(tree, store, dict.fromkeys(keys, b"0"), model, knowing=True)
    for version in range(1, 4):
        apply_all(tree, store, dict.fromkeys(keys, b"%d" % version), model, knowing=True)
    cold = JellyfishTree(INTL, store.read, version=tree.version)
    assert all(cold.get(key, 1) == b"1" for key in keys)
    writes: dict[bytes, bytes | None] = {key: b"new" for key in keys[:200]}
    writes.update({rng.randbytes(6): b"fresh" for _ in range(100)})
    assert cold.apply(4, writes, model).root == tree.apply(4, writes, model).root
    model.update(writes)  # type: ignore[arg-type]
    assert cold.root_hash() == reference_root(INTL, model)


def test_keys_as_bytes_is_to_bytes_for_every_key_through_a_full_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's keys come from `keys_as_bytes`: byte for byte `NodeKey.to_bytes`, for
    paths of every length (odd and even), many versions, and past the bound of its cache of
    packed paths (emptied and filled again)."""
    monkeypatch.setattr(jmt_nodes, "_PACKED_MAX", 64)
    jmt_nodes._PACKED.clear()
    rng = random.Random(7)
    keys = [
        jmt_nodes.NodeKey(
            rng.choice((0, 1, 255, 256, 2**40, 2**63 - 1)),
            "".join(rng.choice("0123456789abcdef") for _ in range(rng.randrange(0, 65))),
        )
        for _ in range(2000)
    ]
    keys += keys[:500]  # paths seen before (in the cache, or evicted from it)
    assert jmt_nodes.keys_as_bytes(keys) == [key.to_bytes() for key in keys]
    assert len(jmt_nodes._PACKED) <= 64
    jmt_nodes._PACKED.clear()
