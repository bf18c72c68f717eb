"""What a block store answers a block request with (`block_sync.serve_from_store`), the one
rule the node's driver and the simulator's slots both use."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from consortia.consensus.block_sync import serve_from_store


def _chain(length: int) -> dict[bytes, Any]:
    """Committed blocks 0..length-1 by id, each naming its parent, with tiny payloads."""
    blocks: dict[bytes, Any] = {}
    for height in range(length):
        header = SimpleNamespace(height=height, parent_id=bytes([height - 1]) if height else b"")
        blocks[bytes([height])] = SimpleNamespace(header=header, payload=[b"x"])
    return blocks


def test_committed_blocks_come_newest_first_up_to_count() -> None:
    committed = _chain(6)
    blocks = serve_from_store(committed.get, {}.get, bytes([5]), 3)
    assert [b.header.height for b in blocks] == [5, 4, 3]
    whole = serve_from_store(committed.get, {}.get, bytes([5]), 100)
    assert [b.header.height for b in whole] == [5, 4, 3, 2, 1, 0]  # stops at the genesis


def test_a_voted_block_goes_alone_and_only_when_not_committed() -> None:
    committed = _chain(3)
    pending = SimpleNamespace(header=SimpleNamespace(height=3, parent_id=bytes([2])), payload=[])
    voted = {b"v": pending, bytes([2]): pending}
    assert serve_from_store(committed.get, voted.get, b"v", 10) == [pending]
    # A committed block is served from the chain even if a voted one has its id.
    assert [b.header.height for b in serve_from_store(committed.get, voted.get, bytes([2]), 2)] == [
        2,
        1,
    ]


def test_an_unknown_id_gets_nothing() -> None:
    assert serve_from_store(_chain(3).get, {}.get, b"nope", 10) == []
