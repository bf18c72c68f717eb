"""The tree of blocks above the last committed block, and the two-chain commit rule.

The root is the last committed block. Every other block in the tree descends from it through
parent ids, so a block whose parent is unknown is never inserted (the replica fetches the
parent first). Committing a block makes it the root and prunes every branch that does not
descend from it: the tree never holds more than `blocks_max` blocks.
"""

from __future__ import annotations

from consortia.types.consensus import Block, BlockHeader, QuorumCertificate


class BlockTree:
    def __init__(
        self, root: Block, root_id: bytes, root_qc: QuorumCertificate, *, blocks_max: int = 4096
    ) -> None:
        self.root = root
        self.root_id = root_id
        self.blocks: dict[bytes, Block] = {root_id: root}
        self.high_qc = root_qc
        # Block ids by parent, for pruning.
        self._children: dict[bytes, list[bytes]] = {}
        self._blocks_max = blocks_max

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self.blocks

    def get(self, block_id: bytes) -> Block | None:
        return self.blocks.get(block_id)

    @property
    def root_height(self) -> int:
        return self.root.header.height

    def is_full(self) -> bool:
        return len(self.blocks) >= self._blocks_max

    def insert(self, block_id: bytes, block: Block) -> bool:
        """Add a block whose parent is in the tree. False when it cannot be added."""
        if block_id in self.blocks:
            return True
        header = block.header
        parent = self.blocks.get(header.parent_id)
        if parent is None or self.is_full():
            return False
        if header.height != parent.header.height + 1 or (
            header.round <= parent.header.round and header.epoch == parent.header.epoch
        ):
            return False
        self.blocks[block_id] = block
        self._children.setdefault(header.parent_id, []).append(block_id)
        return True

    def update_high_qc(self, qc: QuorumCertificate) -> bool:
        """Remember `qc` if it is the highest seen (by epoch, then round)."""
        if (qc.epoch, qc.round) > (self.high_qc.epoch, self.high_qc.round):
            self.high_qc = qc
            return True
        return False

    def commit_candidate(self, qc: QuorumCertificate) -> bytes | None:
        """The block this QC commits under the two-chain rule, if any and not yet committed.

        A QC for block C commits C's parent P when P.round + 1 == C.round in one epoch.
        """
        child = self.blocks.get(qc.block_id)
        if child is None or qc.block_id == self.root_id:
            return None
        parent = self.blocks.get(child.header.parent_id)
        if parent is None:
            return None
        parent_id = child.header.parent_id
        if parent_id == self.root_id:
            return None
        if (
            parent.header.epoch == child.header.epoch
            and parent.header.round + 1 == child.header.round
        ):
            return parent_id
        return None

    def ends_epoch(self, block_id: bytes, epoch: int) -> bool:
        """True when `block_id` or an uncommitted ancestor ends `epoch` (carries `next_epoch`),
        or the root itself does: what follows such a block in the old epoch is empty."""
        current = block_id
        while current != self.root_id:
            block = self.blocks.get(current)
            if block is None:
                return False
            if block.header.next_epoch is not None:
                return True
            current = block.header.parent_id
        return self.root.header.next_epoch is not None and self.root.header.epoch == epoch

    def commit_path(self, block_id: bytes) -> list[tuple[bytes, Block]]:
        """What committing `block_id` commits, oldest first: the path from the root's child,
        cut after the first block that ends the epoch (an epoch ends exactly there)."""
        path = self.path_from_root(block_id)
        for index, (_, block) in enumerate(path):
            if block.header.next_epoch is not None:
                return path[: index + 1]
        return path

    def path_from_root(self, block_id: bytes) -> list[tuple[bytes, Block]]:
        """Blocks from the root's child to `block_id`, oldest first."""
        path: list[tuple[bytes, Block]] = []
        current = block_id
        while current != self.root_id:
            block = self.blocks[current]
            path.append((current, block))
            current = block.header.parent_id
        path.reverse()
        return path

    def commit(self, block_id: bytes) -> list[tuple[bytes, Block]]:
        """Make `block_id` the root; return the newly committed blocks, oldest first."""
        path = self.path_from_root(block_id)
        assert path, "committing the root again"
        assert path[-1][1].header.height > self.root_height
        self.root_id, self.root = path[-1]
        self._prune()
        return path

    def reset_root(self, root: Block, root_id: bytes, root_qc: QuorumCertificate) -> None:
        """Start over from a new root (a new epoch): the old epoch's branches are dropped."""
        self.root, self.root_id = root, root_id
        self.blocks = {root_id: root}
        self._children = {}
        self.high_qc = root_qc

    def _prune(self) -> None:
        keep: dict[bytes, Block] = {self.root_id: self.root}
        children: dict[bytes, list[bytes]] = {}
        frontier = [self.root_id]
        while frontier:
            current = frontier.pop()
            for child in self._children.get(current, []):
                keep[child] = self.blocks[child]
                children.setdefault(current, []).append(child)
                frontier.append(child)
        self.blocks = keep
        self._children = children

    def headers(self) -> list[BlockHeader]:
        return [block.header for block in self.blocks.values()]
