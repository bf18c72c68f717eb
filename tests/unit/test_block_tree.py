"""The block tree: what may be inserted, the two-chain commit rule, commits and pruning."""

from __future__ import annotations

from consortia.consensus.block_tree import BlockTree
from consortia.types.consensus import Block, QuorumCertificate
from consortia.types.signing import block_id
from tests.consensus_helpers import SUITE, make_cluster, make_header, qc_stub

CLUSTER = make_cluster(4)
GENESIS = CLUSTER.genesis
GENESIS_ID = CLUSTER.genesis_id
AUTHOR = CLUSTER.keys[0].node_id


def new_tree(blocks_max: int = 4096) -> BlockTree:
    return BlockTree(GENESIS, GENESIS_ID, CLUSTER.root_qc, blocks_max=blocks_max)


def child(
    parent: Block,
    round_: int,
    *,
    height: int | None = None,
    epoch: int = 0,
    tag: int = 0,
) -> tuple[bytes, Block]:
    parent_id = block_id(SUITE, parent.header)
    header = make_header(
        round_=round_,
        height=parent.header.height + 1 if height is None else height,
        parent_id=parent_id,
        justify=qc_stub(parent.header.round, parent_id, parent.header.height, epoch),
        author=AUTHOR,
        epoch=epoch,
        timestamp_ms=round_ * 10 + tag,
    )
    block = Block(header=header, payload=[])
    return block_id(SUITE, header), block


def qc_for(block: Block) -> QuorumCertificate:
    header = block.header
    return qc_stub(header.round, block_id(SUITE, header), header.height, header.epoch)


def test_insert_needs_a_known_parent() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    assert not tree.insert(b_id, b)
    assert b_id not in tree
    assert tree.insert(a_id, a)
    assert tree.insert(b_id, b)
    assert tree.get(b_id) == b
    assert tree.insert(b_id, b)  # already there: idempotent
    assert len(tree.blocks) == 3


def test_insert_checks_height_is_parent_plus_one() -> None:
    tree = new_tree()
    for height in (0, 2, 5):
        bad_id, bad = child(GENESIS, 1, height=height)
        assert not tree.insert(bad_id, bad)
        assert bad_id not in tree
    good_id, good = child(GENESIS, 1, height=1)
    assert tree.insert(good_id, good)


def test_insert_checks_round_increases_within_an_epoch() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 3)
    assert tree.insert(a_id, a)
    for round_ in (1, 3):
        bad_id, bad = child(a, round_)
        assert not tree.insert(bad_id, bad)
    good_id, good = child(a, 4)
    assert tree.insert(good_id, good)
    # A new epoch restarts rounds: a lower round is fine across the boundary.
    next_epoch_id, next_epoch = child(a, 1, epoch=1)
    assert tree.insert(next_epoch_id, next_epoch)


def test_commit_candidate_only_for_consecutive_rounds() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    c_id, c = child(b, 4)  # gap: round 3 failed
    d_id, d = child(c, 5)
    for new_id, block in ((a_id, a), (b_id, b), (c_id, c), (d_id, d)):
        assert tree.insert(new_id, block)
    assert tree.commit_candidate(qc_for(b)) == a_id
    assert tree.commit_candidate(qc_for(c)) is None  # 2 + 1 != 4
    assert tree.commit_candidate(qc_for(d)) == c_id
    # A QC for the root's child names the root as parent: nothing new to commit.
    assert tree.commit_candidate(qc_for(a)) is None
    # A QC for the root itself, or for an unknown block, commits nothing.
    assert tree.commit_candidate(CLUSTER.root_qc) is None
    assert tree.commit_candidate(qc_stub(9, bytes(32), 9)) is None


def test_commit_candidate_not_across_epochs() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2, epoch=1)
    assert tree.insert(a_id, a)
    assert tree.insert(b_id, b)
    assert tree.commit_candidate(qc_for(b)) is None


def test_commit_returns_path_oldest_first_and_prunes_forks() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    c_id, c = child(b, 3)
    d_id, d = child(a, 4, tag=1)  # fork off a
    e_id, e = child(GENESIS, 5, tag=2)  # fork off the root
    f_id, f = child(c, 6)
    for new_id, block in ((a_id, a), (b_id, b), (c_id, c), (d_id, d), (e_id, e), (f_id, f)):
        assert tree.insert(new_id, block)
    path = tree.commit(b_id)
    assert [new_id for new_id, _ in path] == [a_id, b_id]
    assert [block for _, block in path] == [a, b]
    assert tree.root_id == b_id
    assert tree.root == b
    assert tree.root_height == 2
    assert set(tree.blocks) == {b_id, c_id, f_id}
    for pruned in (GENESIS_ID, a_id, d_id, e_id):
        assert pruned not in tree
    # A block on a pruned branch can no longer be inserted: its parent is gone.
    g_id, g = child(d, 7)
    assert not tree.insert(g_id, g)
    assert [new_id for new_id, _ in tree.commit(f_id)] == [c_id, f_id]
    assert set(tree.blocks) == {f_id}


def test_path_from_root() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    tree.insert(a_id, a)
    tree.insert(b_id, b)
    assert tree.path_from_root(b_id) == [(a_id, a), (b_id, b)]
    assert tree.path_from_root(GENESIS_ID) == []


def test_bounded_by_blocks_max() -> None:
    tree = new_tree(blocks_max=4)
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    c_id, c = child(b, 3)
    d_id, d = child(c, 4)
    assert tree.insert(a_id, a)
    assert tree.insert(b_id, b)
    assert not tree.is_full()
    assert tree.insert(c_id, c)
    assert tree.is_full()
    assert not tree.insert(d_id, d)
    assert len(tree.blocks) == 4
    tree.commit(b_id)  # prunes the root and a: room again
    assert not tree.is_full()
    assert tree.insert(d_id, d)
    assert len(tree.blocks) <= 4


def test_high_qc_only_rises() -> None:
    tree = new_tree()
    assert tree.high_qc == CLUSTER.root_qc
    assert tree.update_high_qc(qc_stub(3))
    assert not tree.update_high_qc(qc_stub(2))
    assert not tree.update_high_qc(qc_stub(3, bytes([1]) * 32))
    assert tree.high_qc.round == 3
    assert tree.update_high_qc(qc_stub(1, epoch=1))  # a later epoch wins whatever the round
    assert tree.high_qc.epoch == 1


def test_reset_root_drops_everything() -> None:
    tree = new_tree()
    a_id, a = child(GENESIS, 1)
    b_id, b = child(a, 2)
    tree.insert(a_id, a)
    tree.insert(b_id, b)
    root_qc = qc_stub(0, b_id, 2, epoch=1)
    tree.reset_root(b, b_id, root_qc)
    assert set(tree.blocks) == {b_id}
    assert tree.root_id == b_id
    assert tree.high_qc == root_qc
    assert tree.headers() == [b.header]
