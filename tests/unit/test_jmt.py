"""The versioned sparse Merkle tree: roots independent of order and batches, deletions that
collapse back, reads and proofs at every retained version, pruning, tampered proofs, encoding.

Each property compares the tree against a plain dict (the model) and against a tree built in
one batch from the model's state; structure checks walk the stored nodes directly.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.crypto import Suite, suite
from consortia.errors import DecodeError
from consortia.execution import jmt
from consortia.execution.jmt import (
    HeightUnavailableError,
    JellyfishTree,
    MemoryNodeStore,
    NodeKey,
    SparseMerkleProof,
    TreeUpdate,
    verify_proof,
)
from consortia.execution.jmt_nodes import (
    Internal,
    Leaf,
    StateCorruptError,
    decode_node,
    encode_node,
)
from consortia.types.encoding import decode, encode
from consortia.types.state_proof import ProofLeaf, key_hash, placeholder

SUITE = suite("intl")
GM = suite("gm")
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Under the intl suite the key hashes of A and B share their first 8 nibbles (ee0892c8), and
# C shares 5 with them (ee089): found by search, checked by the first test.
A, B, C = b"long-prefix-55002", b"long-prefix-73669", b"near-327928"

KEYS = st.sampled_from([A, B, C]) | st.binary(max_size=2)
VALUES = st.binary(max_size=4)
WRITES = st.dictionaries(KEYS, st.none() | VALUES, max_size=24)
STATES = st.dictionaries(KEYS, VALUES, max_size=40)
CACHES = st.sampled_from([1, 3, 65_536])


def shared_nibbles(first: bytes, second: bytes) -> int:
    left, right = key_hash(SUITE, first).hex(), key_hash(SUITE, second).hex()
    return next(i for i, (x, y) in enumerate(zip(left, right, strict=True)) if x != y)


def new_tree(cache: int = 65_536, crypto: Suite = SUITE) -> tuple[JellyfishTree, MemoryNodeStore]:
    store = MemoryNodeStore()
    return JellyfishTree(crypto, store.read, cache_nodes_max=cache), store


def built_at_once(state: dict[bytes, bytes], crypto: Suite = SUITE) -> bytes:
    tree, _ = new_tree(crypto=crypto)
    return tree.apply(0, state).root


def commit(
    tree: JellyfishTree, store: MemoryNodeStore, writes: dict[bytes, bytes | None]
) -> TreeUpdate:
    version = 0 if tree.version is None else tree.version + 1
    update = tree.apply(version, writes)
    store.write(update)
    return update


def reachable(store: MemoryNodeStore, version: int) -> set[NodeKey]:
    """Every node key the tree of `version` reaches, checking the shape on the way."""
    found: set[NodeKey] = set()
    stack = [NodeKey(version, "")]
    while stack:
        key = stack.pop()
        found.add(key)
        node = decode_node(SUITE, store.nodes[key])
        if isinstance(node, Leaf):
            assert node.path.startswith(key.path), "a leaf sits on its own path"
        elif isinstance(node, Internal):
            assert node.children and len(key.path) < 64
            children = [
                NodeKey(child_version, key.path + "0123456789abcdef"[nibble])
                for nibble, (child_version, _) in node.children.items()
            ]
            if len(children) == 1:
                only = decode_node(SUITE, store.nodes[children[0]])
                assert isinstance(only, Internal), "a single leaf is lifted to its parent"
            stack += children
    return found


def test_the_long_prefix_keys_share_what_the_tests_rely_on() -> None:
    assert shared_nibbles(A, B) == 8
    assert shared_nibbles(A, C) == 5
    assert shared_nibbles(B, C) == 5


# ---------------------------------------------------------------------- reads and versions


def test_an_empty_tree_has_the_placeholder_root_and_proves_absence() -> None:
    tree, store = new_tree()
    with pytest.raises(HeightUnavailableError):
        tree.root_hash()
    update = commit(tree, store, {})
    assert update.root == placeholder(SUITE) == tree.root_hash(0)
    assert tree.get(b"k") is None
    assert verify_proof(SUITE, update.root, b"k", None, tree.prove(b"k"))
    assert not verify_proof(SUITE, update.root, b"k", b"v", tree.prove(b"k"))


def test_values_are_read_back_at_every_version() -> None:
    tree, store = new_tree()
    commit(tree, store, {b"a": b"1", b"b": b"2"})
    commit(tree, store, {b"a": b"3", b"c": b"4"})
    commit(tree, store, {b"b": None, b"c": b"5"})
    commit(tree, store, {})
    expected = [
        {b"a": b"1", b"b": b"2"},
        {b"a": b"3", b"b": b"2", b"c": b"4"},
        {b"a": b"3", b"c": b"5"},
        {b"a": b"3", b"c": b"5"},
    ]
    for version, state in enumerate(expected):
        for key in (b"a", b"b", b"c", b"d"):
            assert tree.get(key, version) == state.get(key)
        assert dict(tree.items(version)) == state
        assert dict(tree.stored_items(version)) == state
        assert tree.root_hash(version) == built_at_once(state)
    assert tree.root_hash(3) == tree.root_hash(2), "a version without writes keeps its root"
    with pytest.raises(HeightUnavailableError, match="after the latest"):
        tree.get(b"a", 4)


def test_a_tree_reopened_over_its_store_reads_every_version_without_rebuilding() -> None:
    tree, store = new_tree()
    rng = random.Random(7)
    for _ in range(5):
        commit(tree, store, {rng.randbytes(3): rng.randbytes(3) for _ in range(50)})
    reopened = JellyfishTree(SUITE, store.read, version=tree.version)
    for version in range(5):
        assert reopened.root_hash(version) == tree.root_hash(version)
        assert dict(reopened.items(version)) == dict(tree.items(version))
        assert dict(reopened.stored_items(version)) == dict(tree.items(version))


@pytest.mark.parametrize("crypto", [SUITE, GM], ids=["intl", "gm"])
def test_the_stored_walk_reads_a_lone_leaf_or_nothing_and_checks_every_node(
    crypto: Suite,
) -> None:
    tree, store = new_tree(crypto=crypto)
    commit(tree, store, {})
    commit(tree, store, {b"only": b"1"})  # the root is a leaf
    rng = random.Random(11)
    state = {rng.randbytes(4): rng.randbytes(3) for _ in range(300)}
    commit(tree, store, state)
    assert list(tree.stored_items(0)) == []
    assert list(tree.stored_items(1)) == [(b"only", b"1")]
    assert dict(tree.stored_items(2)) == {**state, b"only": b"1"}
    below_root = [key for key in store.nodes if key.version == 2 and key.path]
    deep = max(below_root, key=lambda key: len(key.path))
    node = decode_node(crypto, store.nodes[deep])
    assert isinstance(node, Leaf)
    reopened = JellyfishTree(crypto, store.read, version=2)
    store.nodes[deep] = encode_node(Leaf(crypto, node.key, node.value + b"!"))
    with pytest.raises(StateCorruptError, match="not the leaf its parent names"):
        dict(reopened.stored_items(2))
    shallow = min(below_root, key=lambda key: len(key.path))
    del store.nodes[shallow]
    with pytest.raises(StateCorruptError, match="lacks state tree node"):
        dict(reopened.stored_items(2))


def test_the_stored_walk_reads_in_bounded_batches_and_checks_each_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jmt, "STORED_READ_BATCH", 7)
    tree, store = new_tree()
    rng = random.Random(13)
    state = {rng.randbytes(4): rng.randbytes(3) for _ in range(400)}
    commit(tree, store, state)
    asked: list[list[NodeKey]] = []

    def read_many(keys: list[NodeKey]) -> list[bytes | None]:
        asked.append(list(keys))
        return [store.read(key) for key in keys]

    reopened = JellyfishTree(SUITE, store.read, version=0)
    assert dict(reopened.stored_items(0, read_many=read_many)) == state
    below_root = {key for key in store.nodes if key.path}
    assert all(1 <= len(keys) <= 7 for keys in asked)
    assert sorted(key for keys in asked for key in keys) == sorted(below_root), (
        "every node below the root is read exactly once"
    )
    with pytest.raises(StateCorruptError, match="lacks state tree node"):
        dict(reopened.stored_items(0, read_many=lambda keys: [None] * len(keys)))
    with pytest.raises(AssertionError, match="one answer per node"):
        dict(reopened.stored_items(0, read_many=lambda keys: []))


def test_versions_are_applied_in_order_and_the_first_may_be_any() -> None:
    tree, store = new_tree()
    store.write(tree.apply(40, {b"k": b"v"}))
    with pytest.raises(AssertionError):
        tree.apply(42, {})
    with pytest.raises(HeightUnavailableError, match="no state tree at version 39"):
        tree.get(b"k", 39)
    assert tree.get(b"k", 40) == b"v"


def test_the_node_cache_stays_within_its_bound() -> None:
    tree, store = new_tree(cache=16)
    rng = random.Random(3)
    for _ in range(4):
        commit(tree, store, {rng.randbytes(4): b"x" for _ in range(100)})
    assert len(tree._cache) <= 16
    assert tree.cache_misses > 0


# ---------------------------------------------------------------------- determinism


@PROPERTY
@given(STATES, st.randoms(use_true_random=False), CACHES)
def test_the_root_does_not_depend_on_order_or_batches(
    state: dict[bytes, bytes], rnd: random.Random, cache: int
) -> None:
    items = list(state.items())
    rnd.shuffle(items)
    tree, store = new_tree(cache)
    commit(tree, store, {})
    while items:
        cut = rnd.randint(1, len(items))
        commit(tree, store, dict(items[:cut]))
        del items[:cut]
    assert tree.root_hash() == built_at_once(state)


@PROPERTY
@given(STATES, STATES, st.randoms(use_true_random=False), CACHES)
def test_deleting_keys_gives_the_root_of_a_tree_that_never_held_them(
    kept: dict[bytes, bytes], extra: dict[bytes, bytes], rnd: random.Random, cache: int
) -> None:
    extra = {key: value for key, value in extra.items() if key not in kept}
    tree, store = new_tree(cache)
    commit(tree, store, {**kept, **extra})
    doomed = list(extra)
    rnd.shuffle(doomed)
    while doomed:
        cut = rnd.randint(1, len(doomed))
        commit(tree, store, dict.fromkeys(doomed[:cut]))
        del doomed[:cut]
    assert tree.root_hash() == built_at_once(kept)
    reachable(store, tree.version or 0)
    commit(tree, store, dict.fromkeys(kept))
    assert tree.root_hash() == placeholder(SUITE)


@PROPERTY
@given(st.lists(WRITES, min_size=1, max_size=8), CACHES)
def test_every_version_matches_the_model_and_a_tree_built_at_once(
    batches: list[dict[bytes, bytes | None]], cache: int
) -> None:
    tree, store = new_tree(cache)
    model: dict[bytes, bytes] = {}
    states = []
    for writes in batches:
        update = commit(tree, store, writes)
        for key, value in writes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        states.append(dict(model))
        assert update.root == built_at_once(model)
        reachable(store, update.version)
    keys = {key for writes in batches for key in writes} | {A, B, C}
    for version, state in enumerate(states):
        root = tree.root_hash(version)
        for key in keys:
            value, proof = tree.get_with_proof(key, version)
            assert value == state.get(key) == tree.get(key, version)
            assert verify_proof(SUITE, root, key, value, proof)


@PROPERTY
@given(st.lists(WRITES, min_size=1, max_size=8), CACHES)
def test_knowing_the_present_keys_changes_nothing_but_what_is_read(
    batches: list[dict[bytes, bytes | None]], cache: int
) -> None:
    """With the present keys given, leaves that are only replaced are not read; the update
    (root, nodes, stale list) is the one a tree that reads them writes."""
    reading, reading_store = new_tree(cache)
    knowing, knowing_store = new_tree(cache)
    model: dict[bytes, bytes] = {}
    for writes in batches:
        version = 0 if reading.version is None else reading.version + 1
        expected = reading.apply(version, writes)
        reading_store.write(expected)
        got = knowing.apply(version, writes, model)
        knowing_store.write(got)
        assert got.root == expected.root and got.nodes == expected.nodes
        assert sorted(got.stale) == sorted(expected.stale)
        for key, value in writes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    assert knowing.cache_misses <= reading.cache_misses


def test_replacing_a_present_keys_value_reads_no_leaf() -> None:
    tree, store = new_tree()
    rng = random.Random(13)
    state = {rng.randbytes(8): rng.randbytes(8) for _ in range(3000)}
    commit(tree, store, state)
    writes: dict[bytes, bytes | None] = {key: b"new" for key in rng.sample(sorted(state), 200)}
    misses = []
    for present in (state, None):
        cold = JellyfishTree(SUITE, store.read, version=tree.version)
        assert len(dict(cold.items())) == len(state)  # every internal node is cached now
        before = cold.cache_misses
        update = cold.apply(1, writes, present)
        assert update.root == built_at_once({**state, **writes})  # type: ignore[dict-item]
        misses.append(cold.cache_misses - before)
    assert misses == [0, 200], "with the present keys, not one of the 200 leaves is read"


# ---------------------------------------------------------------------- stale nodes, pruning


@PROPERTY
@given(st.lists(WRITES, min_size=2, max_size=8), st.data())
def test_pruning_keeps_every_retained_version_and_refuses_older_ones(
    batches: list[dict[bytes, bytes | None]], data: st.DataObject
) -> None:
    tree, store = new_tree()
    written: set[NodeKey] = set()
    stale: list[NodeKey] = []
    models: list[dict[bytes, bytes]] = []
    model: dict[bytes, bytes] = {}
    for writes in batches:
        update = commit(tree, store, writes)
        assert not written & set(update.nodes), "nodes are written once"
        assert all(key.version == update.version for key in update.nodes)
        written |= set(update.nodes)
        assert set(update.stale) <= written and all(
            k.version < update.version for k in update.stale
        )
        stale += update.stale
        model = {**model, **writes}  # type: ignore[dict-item]
        model = {key: value for key, value in model.items() if value is not None}
        models.append(model)
    latest = len(batches) - 1
    assert len(stale) == len(set(stale)), "a node goes stale once"
    assert written - set(stale) == reachable(store, latest), "stale lists miss nothing"

    oldest = data.draw(st.integers(0, latest), label="oldest")
    store.prune(oldest)
    tree.retain_from(oldest)
    kept = set().union(*(reachable(store, version) for version in range(oldest, latest + 1)))
    assert set(store.nodes) == kept, "pruning deletes exactly what no retained version reaches"
    # A tree with a cold cache sees only what the store kept.
    cold = JellyfishTree(SUITE, store.read, version=latest, oldest_version=oldest)
    keys = {key for writes in batches for key in writes} | {A}
    for reader in (tree, cold):
        for version in range(oldest, latest + 1):
            root = reader.root_hash(version)
            for key in keys:
                value, proof = reader.get_with_proof(key, version)
                assert value == models[version].get(key)
                assert verify_proof(SUITE, root, key, value, proof)
        for version in range(oldest):
            with pytest.raises(HeightUnavailableError, match="pruned"):
                reader.get(A, version)
            with pytest.raises(HeightUnavailableError, match="pruned"):
                reader.prove(A, version)


def test_pruning_an_old_version_deletes_its_replaced_nodes() -> None:
    tree, store = new_tree()
    rng = random.Random(11)
    keys = [rng.randbytes(6) for _ in range(300)]
    commit(tree, store, dict.fromkeys(keys, b"0"))
    for version in range(1, 20):
        commit(tree, store, {key: b"%d" % version for key in rng.sample(keys, 20)})
    before = len(store)
    deleted = store.prune(15)
    tree.retain_from(15)
    assert deleted > 0 and len(store) == before - deleted
    assert set(store.nodes) == set().union(*(reachable(store, v) for v in range(15, 20)))
    with pytest.raises(HeightUnavailableError, match="before 15"):
        tree.root_hash(14)
    assert tree.root_hash(15) == built_at_once(dict(tree.items(15)))


# ---------------------------------------------------------------------- proofs


def proven_tree() -> tuple[JellyfishTree, bytes]:
    tree, store = new_tree()
    rng = random.Random(5)
    state = {rng.randbytes(5): rng.randbytes(8) for _ in range(2000)}
    state[A] = b"value of a"
    state[B] = b"value of b"
    update = commit(tree, store, state)
    return tree, update.root


PROVEN = proven_tree()


def tampered(proof: SparseMerkleProof, **changes: object) -> SparseMerkleProof:
    fields = {"leaf": proof.leaf, "bitmaps": list(proof.bitmaps), "siblings": list(proof.siblings)}
    fields.update(changes)
    return SparseMerkleProof(**fields)  # type: ignore[arg-type]


def flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_inclusion_proofs_are_short_and_verify() -> None:
    tree, root = PROVEN
    value, proof = tree.get_with_proof(A)
    assert value == b"value of a"
    assert verify_proof(SUITE, root, A, value, proof)
    # A and B share 8 nibbles: their path runs through single-child internal nodes.
    assert len(proof.bitmaps) == 9
    ordinary = tree.prove(next(key for key, _ in tree.items() if key not in (A, B)))
    assert len(ordinary.bitmaps) <= 5 and len(ordinary.siblings) <= 15 * len(ordinary.bitmaps)
    assert decode(encode(proof), SparseMerkleProof) == proof


def test_a_tampered_proof_value_key_or_root_fails() -> None:
    tree, root = PROVEN
    proof = tree.prove(A)
    assert proof.leaf is not None
    assert not verify_proof(SUITE, root, A, b"another value", proof)
    assert not verify_proof(SUITE, root, A, None, proof), "inclusion is no absence"
    assert not verify_proof(SUITE, root, B, b"value of a", proof)
    assert not verify_proof(SUITE, root, B, None, proof)
    assert not verify_proof(SUITE, flip(root), A, b"value of a", proof)
    leaf = proof.leaf
    for bad in (
        tampered(proof, leaf=ProofLeaf(leaf.key_hash, flip(leaf.value_hash))),
        tampered(proof, leaf=ProofLeaf(flip(leaf.key_hash), leaf.value_hash)),
        tampered(proof, leaf=None),
        tampered(proof, siblings=[flip(proof.siblings[0]), *proof.siblings[1:]]),
        tampered(proof, siblings=[*proof.siblings[:-1], flip(proof.siblings[-1])]),
        tampered(proof, siblings=proof.siblings[:-1]),
        tampered(proof, bitmaps=proof.bitmaps[1:], siblings=proof.siblings[15:]),
        tampered(proof, bitmaps=[proof.bitmaps[0] ^ 1, *proof.bitmaps[1:]]),
        tampered(proof, bitmaps=[*proof.bitmaps, 0]),
        tampered(proof, siblings=[placeholder(SUITE), *proof.siblings[1:]]),
    ):
        assert not verify_proof(SUITE, root, A, b"value of a", bad)


def test_absence_of_a_key_sharing_a_long_prefix_is_proven_by_an_empty_child() -> None:
    tree, root = PROVEN
    value, proof = tree.get_with_proof(C)
    assert value is None
    assert proof.leaf is None, "C leaves A and B's chain at nibble 5, into an empty child"
    assert len(proof.bitmaps) == 6
    assert verify_proof(SUITE, root, C, None, proof)
    assert not verify_proof(SUITE, root, C, b"anything", proof)
    assert not verify_proof(SUITE, root, A, None, proof)
    extra = tampered(proof, bitmaps=[*proof.bitmaps[:-1], proof.bitmaps[-1] | 1 << 0])
    assert not verify_proof(SUITE, root, C, None, extra)


def test_absence_is_proven_by_another_leaf_on_the_path() -> None:
    tree, store = new_tree()
    rng = random.Random(9)
    update = commit(tree, store, {A: b"a", **{rng.randbytes(5): b"x" for _ in range(100)}})
    value, proof = tree.get_with_proof(B)
    assert value is None and proof.leaf is not None
    assert proof.leaf.key_hash == key_hash(SUITE, A), "A's leaf occupies B's prefix"
    assert verify_proof(SUITE, update.root, B, None, proof)
    assert not verify_proof(SUITE, update.root, B, b"a", proof)
    # The same leaf cannot show the absence of a key whose path it does not sit on.
    assert not verify_proof(SUITE, update.root, b"elsewhere", None, proof)


def test_deleted_keys_are_proven_absent() -> None:
    tree, store = new_tree()
    commit(tree, store, {A: b"a", B: b"b", b"other": b"o"})
    update = commit(tree, store, {B: None})
    value, proof = tree.get_with_proof(B)
    assert value is None
    assert verify_proof(SUITE, update.root, B, None, proof)
    assert not verify_proof(SUITE, update.root, B, b"b", tree.prove(B, 0))
    assert verify_proof(SUITE, tree.root_hash(0), B, b"b", tree.prove(B, 0))


@PROPERTY
@given(st.data())
def test_random_changes_to_a_proof_never_verify(data: st.DataObject) -> None:
    tree, root = PROVEN
    key = data.draw(st.sampled_from([A, B, C, b"absent"]))
    value, proof = tree.get_with_proof(key)
    raw = bytearray(encode(proof))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    try:
        changed = decode(bytes(raw), SparseMerkleProof)
    except DecodeError:
        return
    assert not verify_proof(SUITE, root, key, value, changed)


def test_each_suite_has_its_own_roots_and_proofs() -> None:
    state = {b"a": b"1", b"b": b"2", b"c": b"3"}
    assert built_at_once(state, GM) != built_at_once(state)
    tree, store = new_tree(crypto=GM)
    update = commit(tree, store, state)
    proof = tree.prove(b"b")
    assert verify_proof(GM, update.root, b"b", b"2", proof)
    assert not verify_proof(SUITE, update.root, b"b", b"2", proof)


# ---------------------------------------------------------------------- encoding


@given(st.integers(0, 2**63 - 1), st.text("0123456789abcdef", max_size=64))
def test_node_keys_round_trip_and_sort_by_version(version: int, path: str) -> None:
    key = NodeKey(version, path)
    assert NodeKey.from_bytes(key.to_bytes()) == key
    assert NodeKey(version + 1, "").to_bytes() > key.to_bytes()


def test_malformed_node_keys_and_nodes_are_refused() -> None:
    for data in (b"", b"\0" * 8, b"\0" * 8 + b"\x41", b"\0" * 8 + b"\x01\x1f", b"\0" * 8 + b"\x02"):
        with pytest.raises(DecodeError):
            NodeKey.from_bytes(data)
    tree, store = new_tree()
    commit(tree, store, {b"a": b"1", b"b": b"2"})
    internal = store.nodes[NodeKey(0, "")]
    assert encode_node(decode_node(SUITE, internal)) == internal
    for data in (b"", b"\x90", internal + b"\0", internal[:-1], encode([1, 3, [0], bytes(32)])):
        with pytest.raises(DecodeError):
            decode_node(SUITE, data)
