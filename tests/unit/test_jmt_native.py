"""The state tree's C rewrite (`_jmt_native.c`) against the Python it replaces: every node
rewrite and every write's leaf give the same branch, hash and encoding bytes; two trees, one on
each path, write the same nodes, stale lists and roots through a history of inserts, updates
and deletes; the encoding decodes back to the node; bad input raises and builds nothing; and
the installed package has the C module (a build that lost it would be silently slower).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import suite
from consortia.execution import _jmt_native, jmt_nodes, jmt_write
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore, NodeKey
from consortia.execution.jmt_nodes import (
    BITMAP,
    CHILD,
    LEAF_TAG,
    LEAVES,
    Internal,
    decode_node,
    encode_record,
)
from consortia.execution.jmt_write import TreeWriter
from consortia.types.primitives import U64_MAX
from consortia.types.state_proof import INTERNAL_DOMAIN, RADIX

INTL = suite("intl")
HASH = 32
VERSIONS = st.one_of(
    st.integers(0, 300),
    st.sampled_from([127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64_MAX]),
    st.integers(0, U64_MAX),
)


def python_writer() -> TreeWriter:
    return TreeWriter(INTL, MemoryNodeStore().read, 16, native=False)


@st.composite
def branches(draw: st.DrawFn) -> tuple[object, ...]:
    """A branch as the tree holds one: any bitmap (or none, a node the rewrite fills), the
    leaves among its children, their hashes and versions (0 where empty)."""
    bitmap = draw(st.integers(0, 0xFFFF))
    leaves = bitmap & draw(st.integers(0, 0xFFFF))
    hashes = [
        draw(st.binary(min_size=HASH, max_size=HASH)) if bitmap >> n & 1 else bytes(HASH)
        for n in range(RADIX)
    ]
    versions = [draw(VERSIONS) if bitmap >> n & 1 else 0 for n in range(RADIX)]
    hashed = INTERNAL_DOMAIN + b"".join(hashes)
    return (hashed, bitmap, leaves, INTL.hash(hashed), draw(VERSIONS), *versions)


@settings(max_examples=400, deadline=None, database=None)
@given(
    node=branches(),
    nibble=st.integers(0, RADIX - 1),
    digest=st.binary(min_size=HASH, max_size=HASH),
    version=VERSIONS,
    leaf=st.booleans(),
)
def test_the_c_rewrite_is_the_python_rewrite(
    node: tuple[object, ...], nibble: int, digest: bytes, version: int, leaf: bool
) -> None:
    expected = python_writer()._rewrite_node(node, nibble, digest, version, leaf)
    got = _jmt_native.rewrite(node, nibble, digest, version, leaf)
    assert got == expected
    branch, node_hash, data = got
    assert node_hash == INTL.hash(branch[0])
    decoded = decode_node(INTL, data)
    assert isinstance(decoded, Internal)
    assert decoded.branch()[BITMAP] == branch[BITMAP] == node[BITMAP] | 1 << nibble  # type: ignore[operator]
    assert decoded.branch()[LEAVES] == branch[LEAVES]
    assert decoded.branch()[CHILD + nibble] == version


@settings(max_examples=300, deadline=None, database=None)
@given(
    key=st.binary(max_size=80),
    value=st.binary(max_size=300),
    known=st.sampled_from([None, True, False]),
)
def test_the_c_item_is_the_python_item(key: bytes, value: bytes, known: bool | None) -> None:
    assert _jmt_native.item(key, value, known) == python_writer()._python_item(key, value, known)


@settings(max_examples=300, deadline=None, database=None)
@given(key=st.binary(max_size=70_000), value=st.binary(max_size=300))
def test_the_c_leaf_record_is_msgspecs(key: bytes, value: bytes) -> None:
    assert _jmt_native.leaf_record(key, value) == encode_record((LEAF_TAG, key, value))


@settings(max_examples=300, deadline=None, database=None)
@given(
    keys=st.lists(
        st.tuples(VERSIONS, st.text(alphabet="0123456789abcdef", max_size=64)), max_size=20
    )
)
def test_the_c_node_keys_are_to_bytes(keys: list[tuple[int, str]]) -> None:
    node_keys = [NodeKey(version, path) for version, path in keys]
    expected = [key.to_bytes() for key in node_keys]
    assert _jmt_native.keys_bytes(node_keys) == expected
    assert jmt_nodes.python_keys_as_bytes(node_keys) == expected
    assert jmt_nodes.keys_as_bytes is _jmt_native.keys_bytes
    with pytest.raises(ValueError):
        _jmt_native.keys_bytes([NodeKey(1, "0" * 65)])
    with pytest.raises(ValueError):
        _jmt_native.keys_bytes([NodeKey(1, "0g")])
    with pytest.raises(OverflowError):
        _jmt_native.keys_bytes([NodeKey(-1, "0")])


def test_trees_on_both_paths_write_the_same_nodes_and_roots() -> None:
    rng = random.Random(7)
    stores = MemoryNodeStore(), MemoryNodeStore()
    native = JellyfishTree(INTL, stores[0].read, cache_nodes_max=64)
    python = JellyfishTree(INTL, stores[1].read, cache_nodes_max=64, native=False)
    trees = native, python
    assert native._one is _jmt_native.update_one
    assert native._many is _jmt_native.update
    assert native._item is _jmt_native.item
    assert python._one is TreeWriter._update_one
    assert python._many is TreeWriter._update
    assert python._item == python._python_item
    keys: list[bytes] = []
    for version in range(60):
        writes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(1, 80)):
            roll = rng.random()
            if keys and roll < 0.5:
                writes[rng.choice(keys)] = rng.randbytes(rng.randrange(0, 40))
            elif keys and roll < 0.6:
                writes[rng.choice(keys)] = None
            else:
                key = rng.randbytes(rng.randrange(1, 4))
                keys.append(key)
                writes[key] = rng.randbytes(rng.randrange(0, 40))
        present = None
        if version % 2:
            # Read through both trees alike (a read fills the cache too).
            found = [{key for key in writes if tree.get(key) is not None} for tree in trees]
            assert found[0] == found[1]
            present = found[0]
        updates = [tree.apply(version, writes, present=present) for tree in trees]
        assert updates[0].root == updates[1].root
        assert updates[0].nodes == updates[1].nodes
        assert list(native._cache.items()) == list(python._cache.items())
        assert list(native._roots.items()) == list(python._roots.items())
        assert (native.cache_hits, native.cache_misses) == (python.cache_hits, python.cache_misses)
        assert sorted(updates[0].stale) == sorted(updates[1].stale)
        for store, update in zip(stores, updates, strict=True):
            store.write(update)
    assert native.root_hash() == python.root_hash()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("not a tuple", 0, bytes(HASH), 1, False), TypeError),
        (((b"x",) * 20, 0, bytes(HASH), 1, False), TypeError),
        (("NODE", 16, bytes(HASH), 1, False), ValueError),
        (("NODE", -1, bytes(HASH), 1, False), ValueError),
        (("NODE", 0, bytes(HASH - 1), 1, False), TypeError),
        (("NODE", 0, bytes(HASH), -1, False), OverflowError),
        (("NODE", 0, bytes(HASH), 2**64, False), OverflowError),
        (("NODE", 0, bytes(HASH), "1", False), TypeError),
    ],
)
def test_bad_input_raises(args: tuple[object, ...], error: type[Exception]) -> None:
    node = (INTERNAL_DOMAIN + bytes(HASH * RADIX), 0, 0, bytes(HASH), 0, *([0] * RADIX))
    call = tuple(node if arg == "NODE" else arg for arg in args)
    with pytest.raises(error):
        _jmt_native.rewrite(*call)  # type: ignore[arg-type]


def test_a_bad_bitmap_or_first_field_raises() -> None:
    good = (INTERNAL_DOMAIN + bytes(HASH * RADIX), 1, 0, bytes(HASH), 0, *([0] * RADIX))
    with pytest.raises(ValueError, match="bitmap"):
        _jmt_native.rewrite((good[0], 1 << 16, *good[2:]), 0, bytes(HASH), 1, False)
    with pytest.raises(TypeError, match="first field"):
        _jmt_native.rewrite((b"short", *good[1:]), 0, bytes(HASH), 1, False)
    with pytest.raises(TypeError):
        _jmt_native.item("not bytes", b"", None)  # type: ignore[arg-type]


def test_rewrite_up_works_on_a_snapshot_of_the_path() -> None:
    """Python code run midway (an index conversion) cannot change the path under the C."""
    node = (INTERNAL_DOMAIN + bytes(HASH * RADIX), 0, 0, bytes(HASH), 7, *([0] * RADIX))
    passed: list[tuple[object, ...]] = []

    class Shrinks:
        def __index__(self) -> int:
            passed.clear()
            return 3

    passed.append((node, "ab1", Shrinks()))
    with pytest.raises(TypeError, match="passed"):
        _jmt_native.rewrite_up(passed, bytes(HASH), 9, {}, [], {}, NodeKey)  # type: ignore[arg-type]
    passed[:] = [(node, "ab1", 3), (node, "ab13", 4)]
    nodes: dict[object, bytes] = {}
    top, root = _jmt_native.rewrite_up(passed, bytes(HASH), 9, nodes, [], {}, NodeKey)  # type: ignore[arg-type]
    assert root is None and len(top) == HASH and len(nodes) == 2 and len(passed) == 2


def test_update_one_refuses_what_is_not_a_write_below_a_node() -> None:
    writer = TreeWriter(INTL, MemoryNodeStore().read, 16)
    node = (INTERNAL_DOMAIN + bytes(HASH * RADIX), 1, 1, bytes(HASH), 1, 1, *([0] * 15))
    item = ("0" * 64, bytes(HASH), b"k", b"v", True)
    with pytest.raises(TypeError, match="item"):
        _jmt_native.update_one(writer, 2, "", node, ("0" * 64, None, b"k", None, True))
    with pytest.raises(ValueError, match="64 hex"):
        _jmt_native.update_one(writer, 2, "", node, ("0" * 63, *item[1:]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64 hex"):
        _jmt_native.update_one(writer, 2, "0" * 64, node, item)
    with pytest.raises(ValueError, match="hex digits"):
        _jmt_native.update_one(writer, 2, "", node, ("g" * 64, *item[1:]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="branch"):
        _jmt_native.update_one(writer, 2, "", node[:-1], item)
    assert writer._nodes == {} and writer._stale == []


def test_update_refuses_writes_not_sorted_or_not_below_the_node() -> None:
    writer = TreeWriter(INTL, MemoryNodeStore().read, 16)
    node = (INTERNAL_DOMAIN + bytes(HASH * RADIX), 1, 1, bytes(HASH), 1, 1, *([0] * 15))
    items = [("1" * 64, bytes(HASH), b"a", b"v", None), ("2" * 64, bytes(HASH), b"b", b"v", None)]
    writer._start(items[::-1])
    with pytest.raises(ValueError, match="sorted"):
        _jmt_native.update(writer, 2, "", node, 0, 2)
    writer._start(items)
    with pytest.raises(ValueError, match="under the node"):
        _jmt_native.update(writer, 2, "2", node, 0, 2)
    with pytest.raises(ValueError, match=r"\[lo, hi\)"):
        _jmt_native.update(writer, 2, "", node, 1, 0)
    with pytest.raises(ValueError, match=r"\[lo, hi\)"):
        _jmt_native.update(writer, 2, "", node, 0, 3)
    with pytest.raises(TypeError, match="branch"):
        _jmt_native.update(writer, 2, "", node[:-1], 0, 2)
    writer._start([("1" * 63, *items[0][1:])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Items"):
        _jmt_native.update(writer, 2, "", node, 0, 1)
    assert writer._nodes == {} and writer._stale == [] and writer._cache == {}
    # No writes: nothing changes.
    writer._start([])
    assert _jmt_native.update(writer, 2, "", node, 0, 0) is False


def test_the_installed_package_has_the_c_module() -> None:
    assert jmt_write.NATIVE_AVAILABLE
    # The gm suite hashes with SM3: its tree takes the Python path.
    gm = JellyfishTree(suite("gm"), MemoryNodeStore().read)
    assert gm._one is TreeWriter._update_one
    assert gm._many is TreeWriter._update
