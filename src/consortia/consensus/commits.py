"""The committed edge of the block tree: what a commit makes final and what proves it.

Owns the recently committed blocks kept in memory to answer peers' block requests. A commit
takes the two-chain rule's target, cuts it at an epoch's ending block (an epoch ends exactly
there), moves the tree's root, feeds the committed blocks to leader reputation, and returns
the `Commit` action with the headers that prove an epoch's end when it reached one.

Never changes rounds and never enters an epoch: `replica.py` does, from what `commit`
returns. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.epoch_change import EpochChange
from consortia.consensus.events import Commit
from consortia.consensus.leader import LeaderElection
from consortia.types.consensus import Block, BlockHeader, QuorumCertificate

# Recently committed blocks kept in memory to answer peers' block requests.
RECENT_COMMITTED_MAX = 1024


class CommitLog:
    def __init__(self) -> None:
        # block id -> committed block. Invariant: at most RECENT_COMMITTED_MAX, oldest first.
        self.recent: OrderedDict[bytes, Block] = OrderedDict()

    def get(self, block_id: bytes) -> Block | None:
        return self.recent.get(block_id)

    def commit(
        self,
        tree: BlockTree,
        leaders: LeaderElection,
        epochs: EpochChange,
        target: bytes,
        proof: QuorumCertificate,
    ) -> tuple[Commit, list[BlockHeader] | None]:
        """Commit `target` (cut at an epoch's end) and its ancestors; `proof` made it final.

        Returns the `Commit` action, and the headers from the last committed block's child to
        the block `proof` certifies when the commit ended the epoch (None otherwise).
        """
        path = tree.commit_path(target)
        last_id, last = path[-1]
        proof_headers = epochs.proof_headers(tree, last_id, proof)
        certificate = proof_headers[0].justify
        assert certificate.block_id == last_id, "the proof's first header must extend the last"
        previous_root = tree.root
        committed = tree.commit(last_id)
        assert committed == path
        blocks = [block for _, block in committed]
        leaders.record_blocks(blocks, previous_root.header)
        for committed_id, block in committed:
            self.recent[committed_id] = block
            if len(self.recent) > RECENT_COMMITTED_MAX:
                self.recent.popitem(last=False)
        ended = proof_headers if last.header.next_epoch is not None else None
        commit = Commit(blocks, certificate, proof, reputation=leaders.state())
        return commit, ended

    def check(self) -> str | None:
        """The first broken invariant, or None."""
        if len(self.recent) > RECENT_COMMITTED_MAX:
            return f"{len(self.recent)} recent committed blocks, above {RECENT_COMMITTED_MAX}"
        return None
