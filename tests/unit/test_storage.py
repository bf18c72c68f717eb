"""The node's store: commits are whole or absent, durable across reopening and SIGKILL, and the
records a restarted node needs read back exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from consortia.storage import CommitRecord, NodeStore, StoredEvent, StoredReceipt, TreeWrite
from consortia.types.consensus import Block, CommitProof, EpochChangeResponse, SafetyState
from consortia.types.signing import block_id
from tests.consensus_helpers import (
    SUITE,
    make_block,
    make_cluster,
    make_qc,
)

CLUSTER = make_cluster(4)


def chain(length: int) -> list[Block]:
    blocks = [CLUSTER.genesis]
    qc = CLUSTER.root_qc
    for round_ in range(1, length + 1):
        block = make_block(blocks[-1], qc, round_=round_, author=CLUSTER.node_ids[round_ % 4])
        qc = make_qc(CLUSTER, block, CLUSTER.keys[:3])
        blocks.append(block)
    return blocks[1:]


def commit(
    store: NodeStore,
    blocks: list[Block],
    index: int,
    value: bytes = b"v",
    receipts: list[StoredReceipt] | None = None,
    writes: dict[bytes, bytes | None] | None = None,
) -> None:
    block = blocks[index]
    child = blocks[index + 1]
    store.commit_block(
        block=block,
        block_id=block_id(SUITE, block.header),
        record=CommitRecord(child.header.justify, child.header.justify),
        receipts=receipts
        if receipts is not None
        else [
            StoredReceipt(
                bytes([index]) * 32,
                block.header.height,
                0,
                True,
                "ok",
                "",
                7,
                [StoredEvent("asset", "transferred", {"amount": index})],
            )
        ],
        writes={b"key-%d" % index: value, b"gone": None} if writes is None else writes,
        state_root=bytes([index]) * 32,
        epoch_config=CLUSTER.config,
        epoch_root_id=CLUSTER.genesis_id,
    )


def fresh(path: Path) -> NodeStore:
    store = NodeStore(path / "store", map_size=64 * 1024**2)
    store.initialise(
        state={b"gone": b"x"},
        state_root=bytes(32),
        epoch_config=CLUSTER.config,
        genesis_id=CLUSTER.genesis_id,
    )
    return store


def test_committed_blocks_read_back_after_reopening(tmp_path: Path) -> None:
    blocks = chain(4)
    store = fresh(tmp_path)
    assert store.height == 0 and store.tip() is None
    for index in range(3):
        commit(store, blocks, index)
    store.close()
    store = NodeStore(tmp_path / "store", map_size=64 * 1024**2)
    tip = store.tip()
    assert tip is not None and tip.height == 3 and tip.block == blocks[2]
    assert tip.block_id == block_id(SUITE, blocks[2].header)
    assert tip.state_root == bytes([2]) * 32 and tip.epoch_config == CLUSTER.config
    assert store.block(1) == blocks[0] and store.height_of(block_id(SUITE, blocks[1].header)) == 2
    receipt = store.receipt(bytes([1]) * 32)
    assert receipt is not None and receipt.height == 2 and receipt.events[0].fields == {"amount": 1}
    # The committed keys, listed in order ("gone" deleted); the values are the state tree's.
    assert store.state_keys(b"") == [b"key-0", b"key-1", b"key-2"]
    assert store.state_keys(b"key-") == [b"key-0", b"key-1", b"key-2"]
    assert store.blocks_of_epoch(0, 3) == blocks[:3]


def test_the_key_listing_follows_creations_and_deletions_not_updates(tmp_path: Path) -> None:
    blocks = chain(6)
    store = fresh(tmp_path)
    steps: list[dict[bytes, bytes | None]] = [
        {b"a": b"1", b"b": b"1"},
        {b"a": b"2"},  # an update: still listed, once
        {b"a": None, b"c": b"1"},
        {b"a": b"3", b"b": None},  # created again; b deleted
    ]
    listed = []
    for index, writes in enumerate(steps):
        commit(store, blocks, index, writes=writes)
        listed.append(store.state_keys(b""))
    assert listed == [
        [b"a", b"b", b"gone"],
        [b"a", b"b", b"gone"],
        [b"b", b"c", b"gone"],
        [b"a", b"c", b"gone"],
    ]
    assert store.state_keys(b"c") == [b"c"] and store.state_keys(b"z") == []


def test_tree_nodes_are_read_many_at_once_in_the_order_asked(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "store", map_size=64 * 1024**2)
    nodes = {b"node-%d" % index: b"bytes-%d" % index for index in range(5)}
    store.initialise(
        state={b"k": b"v"},
        state_root=bytes(32),
        epoch_config=CLUSTER.config,
        genesis_id=CLUSTER.genesis_id,
        tree=TreeWrite(version=0, nodes=nodes, stale=[], oldest=0),
    )
    asked = [b"node-3", b"missing", b"node-0", b"node-3"]
    assert store.tree_nodes(asked) == [b"bytes-3", None, b"bytes-0", b"bytes-3"]
    assert store.tree_nodes(asked) == [store.tree_node(key) for key in asked]
    assert store.tree_nodes([]) == []


def test_a_failed_copy_never_replaces_a_transactions_successful_receipt(tmp_path: Path) -> None:
    """A faulty leader puts an already executed transaction in a later block (or twice in one):
    its copy fails (its nonce is spent), and the transaction's receipt stays the successful one;
    a failure is replaced by a later success."""
    blocks = chain(4)
    store = fresh(tmp_path)
    tx = b"\x07" * 32

    def receipt(height: int, index: int, ok: bool) -> StoredReceipt:
        return StoredReceipt(tx, height, index, ok, "ok" if ok else "bad_nonce", "", 1, [])

    commit(store, blocks, 0, receipts=[receipt(1, 0, False)])
    assert store.receipt(tx) == receipt(1, 0, False)
    commit(store, blocks, 1, receipts=[receipt(2, 0, True), receipt(2, 1, False)])
    commit(store, blocks, 2, receipts=[receipt(3, 0, False)])
    assert store.receipt(tx) == receipt(2, 0, True)


def test_blocks_commit_in_order_only(tmp_path: Path) -> None:
    blocks = chain(3)
    store = fresh(tmp_path)
    with pytest.raises(AssertionError, match="committed after"):
        commit(store, blocks, 1)
    assert store.height == 0


def test_safety_state_and_voted_blocks_survive_until_committed(tmp_path: Path) -> None:
    blocks = chain(3)
    store = fresh(tmp_path)
    state = SafetyState(epoch=0, highest_vote_round=2, highest_qc=CLUSTER.root_qc)
    store.persist_safety(state, (block_id(SUITE, blocks[1].header), blocks[1]))
    store.persist_safety(state, (block_id(SUITE, blocks[0].header), blocks[0]))
    assert store.safety_state() == state
    assert sorted(b.header.height for b in store.voted_blocks()) == [1, 2]
    commit(store, blocks, 0)
    assert [b.header.height for b in store.voted_blocks()] == [2]


def test_epoch_proofs_are_kept(tmp_path: Path) -> None:
    blocks = chain(3)
    store = fresh(tmp_path)
    proof = EpochChangeResponse(
        ending=blocks[0].header,
        proof=CommitProof(headers=[blocks[1].header], qc=blocks[2].header.justify),
    )
    store.save_epoch_proof(proof)
    assert store.epoch_proofs() == [proof]


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.unit.test_storage import chain, commit, fresh
    blocks = chain(400)
    store = fresh(Path(sys.argv[1]))
    print("ready", flush=True)
    for index in range(399):
        commit(store, blocks, index, value=bytes([index % 251]) * 2000)
    """
)


@pytest.mark.parametrize("delay_lines", [0, 1, 3])
def test_a_store_killed_mid_commit_reopens_consistent(tmp_path: Path, delay_lines: int) -> None:
    """A writer committing blocks is killed with SIGKILL while it writes; the store reopens
    with a whole prefix of blocks: each present block has its certificates, receipt and state
    writes, and the recorded height names the last of them."""
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    # Let it get somewhere, without a fixed sleep: wait until a few commits are on disk.
    probe = NodeStore(tmp_path / "store", map_size=64 * 1024**2)
    while (probe.height or 0) < 3 + 20 * delay_lines and process.poll() is None:
        time.sleep(0.002)  # polling a condition, not waiting for luck
    process.send_signal(signal.SIGKILL)
    process.wait()
    probe.close()
    store = NodeStore(tmp_path / "store", map_size=64 * 1024**2)
    height = store.height
    assert height is not None and height >= 3
    keys = set(store.state_keys(b""))
    for committed in range(1, height + 1):
        assert store.block(committed) is not None
        assert store.commit_record(committed) is not None
        assert store.receipt(bytes([committed - 1]) * 32) is not None
        assert b"key-%d" % (committed - 1) in keys
    assert store.block(height + 1) is None and b"key-%d" % height not in keys
    assert len(keys) == height  # and "gone" was deleted by the first block
