"""An internal node's encoding through its bitmap's pickers (`jmt_nodes.PICKERS`: a struct
that picks the present children's hashes out of the node's first field) is exactly the
record encoder's, for every shape of node, and decodes back to the node; the pickers stay one
per bitmap.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import suite
from consortia.execution import jmt_nodes
from consortia.execution.jmt_nodes import decode_node, encode_branch, hasher
from consortia.types.encoding import encode
from consortia.types.state_proof import (
    BITMAP_MAX,
    HASH_SIZE,
    INTERNAL_DOMAIN,
    RADIX,
    placeholder,
)

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


def test_the_pickers_are_one_per_bitmap_and_pick_the_present_children() -> None:
    hashed = INTERNAL_DOMAIN + b"".join(bytes([n]) * HASH_SIZE for n in range(RADIX))
    for bitmap in (1, 0x8000, 0x0105, 0x7FFF, BITMAP_MAX):
        first = jmt_nodes.pickers(bitmap)
        assert jmt_nodes.pickers(bitmap) is first is jmt_nodes.PICKERS[bitmap]
        node = (hashed, bitmap, 0, b"", 1, *range(100, 100 + RADIX))
        present = jmt_nodes.nibbles(bitmap)
        assert first[0](node) == tuple(100 + n for n in present)
        hashes = [bytes([n]) * HASH_SIZE for n in range(RADIX)]
        assert first[1](hashes) == first[2](hashed) == tuple(hashes[n] for n in present)
    assert len(jmt_nodes.PICKERS) <= BITMAP_MAX
