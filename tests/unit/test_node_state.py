"""The node's state tree in its store: a restart reopens the stored root without executing a
block, history is pruned but never below what the retention promises, proofs at past heights
verify against that height's root, absence is proven, and a damaged store is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.consensus.events import Commit
from consortia.errors import ConfigError
from consortia.execution.engine import Engine
from consortia.execution.jmt import JellyfishTree, StateCorruptError
from consortia.execution.jmt_nodes import Leaf, NodeKey, decode_node, encode_node
from consortia.identity.config import NodeConfig, parse_node_config
from consortia.node.chain import Chain
from consortia.storage import NodeStore, TreeWrite
from consortia.storage.tree_table import PRUNE_NODES_MIN
from consortia.types.consensus import Block
from consortia.types.encoding import encode
from consortia.types.genesis import Genesis
from consortia.types.state_proof import (
    STATE_HISTORY_HEIGHTS_DEFAULT,
    HeightUnavailableError,
    verify_answer,
    verify_proof,
)
from tests.consensus_helpers import make_block, qc_stub
from tests.node_helpers import BALANCE, SUITE, make_genesis, transfer

HISTORY = 16
GENESIS = make_genesis(4)


def open_chain(path: Path, history: int = HISTORY) -> Chain:
    store = NodeStore(path / "store", map_size=256 * 1024**2)
    return Chain(GENESIS, store, state_history_heights=history)


def commit_transfers(chain: Chain, genesis: Genesis, count: int) -> dict[int, bytes]:
    """`count` blocks, each alice paying bob 1; the state root after each, by height."""
    roots = {}
    tip = chain.store.tip()
    parent: Block = chain.genesis_block if tip is None else tip.block
    for _ in range(count):
        height = chain.height + 1
        nonce = chain.next_nonce("alice")
        assert nonce is not None
        block = make_block(
            parent,
            qc_stub(height - 1, height=height - 1),
            round_=height,
            author=bytes(32),
            payload=[transfer(genesis, "alice", "bob", 1, nonce, expiry=10_000)],
        )
        qc = qc_stub(height, height=height)
        (committed,) = chain.apply(Commit(blocks=[block], certificate=qc, proof=qc))
        assert all(receipt.ok for receipt in committed.receipts)
        roots[height] = committed.state_root
        parent = block
    return roots


def test_a_restart_reopens_the_stored_root_without_executing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(tmp_path)
    roots = commit_transfers(chain, GENESIS, 6)
    root, height = chain.engine.root, chain.height
    chain.store.close()

    executed: list[int] = []
    applied: list[int] = []
    execute, apply = Engine.execute_block, JellyfishTree.apply
    monkeypatch.setattr(
        Engine,
        "execute_block",
        lambda self, h, *a, **k: executed.append(h) or execute(self, h, *a, **k),
    )
    monkeypatch.setattr(
        JellyfishTree,
        "apply",
        lambda self, v, *a, **k: applied.append(v) or apply(self, v, *a, **k),
    )
    restarted = open_chain(tmp_path)
    assert executed == [] and applied == [], "nothing is executed or rehashed at a restart"
    assert restarted.height == height and restarted.engine.root == root
    assert restarted.query("asset", "balance/CNY/bob") == BALANCE + 6
    for past in range(1, height + 1):
        answer = restarted.state_answer("asset", "balance/CNY/bob", past)
        assert answer.root == roots[past] and answer.value == encode(BALANCE + past)
        assert verify_answer(SUITE, answer)
    # It carries on where it stopped, as a node that never restarted does.
    more = commit_transfers(restarted, GENESIS, 2)
    assert executed == [height + 1, height + 2]
    straight = open_chain(tmp_path / "straight")
    assert commit_transfers(straight, GENESIS, 8)[height + 2] == more[height + 2]


def test_a_restart_reads_the_stored_tree_in_batches_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 3)
    values, height = dict(chain.engine.state.current), chain.height
    chain.store.close()
    batches: list[list[bytes]] = []
    singles: list[bytes] = []
    read_many, read_one = NodeStore.tree_nodes, NodeStore.tree_node
    monkeypatch.setattr(
        NodeStore, "tree_nodes", lambda self, keys: batches.append(keys) or read_many(self, keys)
    )
    monkeypatch.setattr(
        NodeStore, "tree_node", lambda self, key: singles.append(key) or read_one(self, key)
    )
    restarted = open_chain(tmp_path)
    assert dict(restarted.engine.state.current) == values and restarted.height == height
    read = [key for keys in batches for key in keys]
    assert len(read) == len(set(read)) > 1, "every node below the root, once, in batches"
    assert len(singles) <= 1, "only the root is read on its own"


def test_proofs_at_a_past_height_verify_against_that_heights_root(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    roots = commit_transfers(chain, GENESIS, 5)
    for height, root in roots.items():
        answer = chain.state_answer("asset", "balance/CNY/alice", height)
        assert answer.height == height and answer.root == root
        assert answer.key == b"asset/balance/CNY/alice"
        assert answer.value == encode(BALANCE - height)
        assert verify_answer(SUITE, answer)
        other = roots[height % 5 + 1]
        assert not verify_proof(SUITE, other, answer.key, answer.value, answer.proof)
    latest = chain.state_answer("asset", "balance/CNY/alice")
    assert latest.height == 5 and latest.root == chain.engine.root


def test_absent_keys_are_proven_absent(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 2)
    for height in (0, 1, 2):
        answer = chain.state_answer("asset", "balance/CNY/nobody", height)
        assert answer.value is None and verify_answer(SUITE, answer)
        assert not verify_proof(SUITE, answer.root, answer.key, encode(0), answer.proof)
    with pytest.raises(HeightUnavailableError, match="after the latest"):
        chain.state_answer("asset", "balance/CNY/bob", 3)


def test_pruning_keeps_every_height_the_retention_promises(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    roots = commit_transfers(chain, GENESIS, 3 * HISTORY)
    latest = chain.height
    oldest = latest - HISTORY
    assert chain.engine.oldest_height == oldest == chain.store.state_oldest()
    nodes_before, stale = chain.store.tree_counts()
    assert stale > 0
    for restarted in (False, True):
        if restarted:
            chain.store.close()
            chain = open_chain(tmp_path)
            assert chain.engine.oldest_height == oldest
        for height in range(oldest, latest + 1):
            answer = chain.state_answer("asset", "balance/CNY/bob", height)
            assert answer.root == roots[height] and verify_answer(SUITE, answer)
            assert chain.query("asset", "balance/CNY/bob", height) == BALANCE + height
            # Every node of every kept height is still there (a cold tree reads them all).
            store = chain.store
            cold = JellyfishTree(
                SUITE,
                lambda key, store=store: store.tree_node(key.to_bytes()),  # type: ignore[misc]
                version=latest,
                oldest_version=oldest,
            )
            assert cold.root_hash(height) == roots[height]
            assert len(dict(cold.items(height))) == len(chain.engine.state)
        for height in (0, oldest - 1):
            with pytest.raises(HeightUnavailableError, match="pruned"):
                chain.state_answer("asset", "balance/CNY/bob", height)
            with pytest.raises(HeightUnavailableError):
                chain.query("asset", "balance/CNY/bob", height)
    # Stale nodes of pruned heights are gone; what is left is bounded by the retention.
    nodes, stale = chain.store.tree_counts()
    assert nodes <= nodes_before
    straight = open_chain(tmp_path / "long", history=10 * HISTORY)
    commit_transfers(straight, GENESIS, 3 * HISTORY)
    assert straight.store.tree_counts()[0] > nodes


def test_pruning_deletes_a_bounded_batch_per_commit(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "store", map_size=64 * 1024**2)
    chain = Chain(GENESIS, store, state_history_heights=HISTORY)
    commit_transfers(chain, GENESIS, 1)
    # Heights that made many nodes stale (made up: only the store's bookkeeping is tested).
    fake = [b"fake-%d" % index for index in range(3 * PRUNE_NODES_MIN)]
    with store._env.begin(write=True) as txn:
        for since in (2, 3):
            store._write_tree(txn, TreeWrite(since, dict.fromkeys(fake, b"x"), fake, 0))
    nodes, before = store.tree_counts()
    assert before >= 2 * len(fake)
    remaining = []
    for height in range(4, 12):
        with store._env.begin(write=True) as txn:
            store._write_tree(txn, TreeWrite(height, {}, [], oldest=3))
        remaining.append(store.tree_counts()[1])
    assert remaining[:3] == [before - k * PRUNE_NODES_MIN for k in (1, 2, 3)]
    assert remaining[-1] == 0, "every list stale at or before the oldest kept height goes"
    assert store.tree_counts()[0] < nodes
    # Nothing stale after the oldest kept height goes.
    assert all(store.tree_node(key.to_bytes()) is not None for key in [NodeKey(1, "")])


def test_a_tampered_root_stops_the_restart(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 3)
    store = chain.store
    key = NodeKey(chain.height, "").to_bytes()
    with store._env.begin(write=True) as txn:
        table = store._db[b"tree_nodes"]
        data = bytearray(txn.get(key, db=table))
        data[-1] ^= 1
        txn.put(key, bytes(data), db=table)
    store.close()
    with pytest.raises(StateCorruptError, match=r"not the stored state root|state tree node"):
        open_chain(tmp_path)


def test_a_store_without_its_state_tree_stops_the_restart(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 2)
    store = chain.store
    with store._env.begin(write=True) as txn:
        txn.delete(NodeKey(chain.height, "").to_bytes(), db=store._db[b"tree_nodes"])
    store.close()
    with pytest.raises(StateCorruptError, match="holds no state tree at height 2"):
        open_chain(tmp_path)


def _forge_leaves(store: NodeStore, wanted: bytes, *, latest: bool) -> None:
    """Give `wanted` a forged value in its stored leaves: the latest one only, or all others."""
    with store._env.begin(write=True) as txn:
        table = store._db[b"tree_nodes"]
        found = []
        for raw_key, data in txn.cursor(db=table):
            node = decode_node(SUITE, bytes(data))
            if isinstance(node, Leaf) and node.key == wanted and len(raw_key) > 9:
                found.append((bytes(raw_key), node))
        assert len(found) > 1
        found.sort()  # by version: the last is the current tree's
        for raw_key, node in found[-1:] if latest else found[:-1]:
            forged = Leaf(SUITE, node.key, encode(10**12))
            txn.put(raw_key, encode_node(forged), db=table)
    store.close()


def test_a_tampered_past_leaf_is_caught_when_read(tmp_path: Path) -> None:
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 3)
    _forge_leaves(chain.store, b"asset/balance/CNY/bob", latest=False)
    restarted = open_chain(tmp_path)  # the current tree is intact: the restart succeeds
    assert restarted.query("asset", "balance/CNY/bob") == BALANCE + 3  # the current values
    with pytest.raises(StateCorruptError, match="not the leaf named"):
        restarted.state_answer("asset", "balance/CNY/bob", 2)


def test_a_tampered_current_leaf_stops_the_restart(tmp_path: Path) -> None:
    """A restart reads the current values from the tree's leaves, each checked against the
    hash its parent names: a forged value never reaches the engine."""
    chain = open_chain(tmp_path)
    commit_transfers(chain, GENESIS, 3)
    _forge_leaves(chain.store, b"asset/balance/CNY/bob", latest=True)
    with pytest.raises(StateCorruptError, match="not the leaf its parent names"):
        open_chain(tmp_path)


def test_the_retention_setting_is_bounded_with_a_clear_error() -> None:
    base = """
peers = []
[node]
name = "n"
node_id = "{node_id}"
member = "m"
data_dir = "data"
{extra}
[chain]
chain_id = "c"
suite = "intl"
genesis = "genesis.json"
genesis_hash = "{node_id}"
[keys]
consensus_key = "k"
tls_certificate = "t"
tls_key = "tk"
ca_certificate = "ca"
[network]
listen = "127.0.0.1:1"
advertise = "127.0.0.1:1"
api_listen = "127.0.0.1:2"
"""

    def parse(extra: str) -> NodeConfig:
        text = base.format(node_id="ab" * 32, extra=extra)
        return parse_node_config(text.encode())

    assert parse("").node.state_history_heights == STATE_HISTORY_HEIGHTS_DEFAULT
    assert parse("state_history_heights = 100").node.state_history_heights == 100
    for bad in ("0", "15", "1000001", '"many"'):
        with pytest.raises(ConfigError, match="state_history_heights"):
            parse(f"state_history_heights = {bad}")
