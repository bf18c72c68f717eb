"""An internal node's encoding (`jmt_nodes.encode_branch`, whose tuple the write path also
writes out itself) is exactly the record encoder's for every shape of node, whether its hashes
are handed over apart or picked out of its first field, and decodes back to the node; a leaf's
written-out encoding is its record's.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import suite
from consortia.execution import jmt_nodes
from consortia.execution.jmt_nodes import (
    LEAF_TAG,
    decode_node,
    encode_branch,
    encode_record,
    hasher,
)
from consortia.types.encoding import encode
from consortia.types.state_proof import BITMAP_MAX, HASH_SIZE, INTERNAL_DOMAIN, RADIX, placeholder

INTL = suite("intl")


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(1, BITMAP_MAX), st.integers(0, BITMAP_MAX), st.randoms(use_true_random=False))
def test_an_internal_node_encodes_as_its_record(
    bitmap: int, leaves: int, rnd: random.Random
) -> None:
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
    assert data == encode_branch(node, hashes) == encode(record)
    decoded = decode_node(INTL, data)
    assert isinstance(decoded, jmt_nodes.Internal) and decoded.branch(7) == node


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=80), st.binary(max_size=300))
def test_a_leaf_written_out_encodes_as_its_record(key: bytes, value: bytes) -> None:
    data = encode_record((LEAF_TAG, key, value))
    assert data == jmt_nodes.encode_leaf(key, value) == encode(jmt_nodes._LeafRecord(key, value))
    decoded = decode_node(INTL, data)
    assert isinstance(decoded, jmt_nodes.Leaf) and (decoded.key, decoded.value) == (key, value)
