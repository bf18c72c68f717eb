"""The committed values follow each block, whether it deletes keys (written one by one) or
not (one `dict.update`), and agree with the tree at every height kept."""

from __future__ import annotations

from consortia.crypto import suite
from consortia.execution.committed import CommittedState
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore

SUITE = suite("intl")


def root_of(values: dict[bytes, bytes]) -> bytes:
    return JellyfishTree(SUITE, MemoryNodeStore().read).apply(0, values).root


def test_values_follow_blocks_with_and_without_deletions() -> None:
    state = CommittedState(SUITE)
    state.initialise({b"a": b"1", b"b": b"2", b"c": b"3"})
    state.apply(1, {b"a": b"9", b"d": b"4"})
    after_one = {b"a": b"9", b"b": b"2", b"c": b"3", b"d": b"4"}
    assert dict(state.current) == after_one and state.root == root_of(after_one)
    # A deletion, the deletion of an absent key and a new key in one block.
    state.apply(2, {b"b": None, b"zz": None, b"e": b"5"})
    after_two = {b"a": b"9", b"c": b"3", b"d": b"4", b"e": b"5"}
    assert dict(state.current) == after_two and state.root == root_of(after_two)
    assert None not in state.current.values()
    assert state.get(b"b") is None and state.get(b"b", 1) == b"2"
    assert all(state.get(key, 1) == value for key, value in after_one.items())
