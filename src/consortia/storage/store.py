"""The node's durable store: blocks, certificates, receipts, the safety rules' state, epoch
proofs, and the engine's committed state, in one embedded transactional database (LMDB).

Why LMDB: one file, crash-safe by construction (copy-on-write B+ tree, no recovery log to
replay), readers never block the writer, and every write transaction is durable (fsync) when
it returns. Its durable batch writes are slower than LevelDB's here (ANCHORS: ~82k against
~540k keys per second), but a block's writes are hundreds of keys, not hundreds of thousands,
and atomic multi-table commits matter more than raw rate (see docs/node.md).

Owns the on-disk layout and the two write paths a node needs:
* `persist_safety`: the safety rules' state and the block voted for, durable before the
  replica may release a signed message (the driver contract of `Persist`);
* `commit_block`: a committed block with its certificates, receipts, state writes, state root,
  state tree nodes and epoch bookkeeping, all in one transaction, durable before anyone hears
  it committed.
So a node killed at any moment restarts from a consistent state: either a block is there
with everything that belongs to it, or none of it is. A committed block's execution record
(its execution header and receipt leaf hashes) goes in the same transaction, and so do the
execution certificates formed since the last commit (a durable write costs an fsync; a
certificate is not worth one of its own), or on their own at shutdown
(`save_execution_certificates`).

The state tree (the engine's versioned sparse Merkle tree) lives in two tables, `tree_nodes`
and `tree_stale` (storage/tree_table.py): each commit stores the tree's new nodes and stale
list, and deletes a bounded batch of nodes stale at or before the oldest height kept
(recorded as `state_oldest`): no kept height reaches them. The tree's leaves are the one
durable copy of the values: a restarted engine reads them by walking the tree from the stored
root. The ordered `state` table keeps only the committed keys (with empty values), for prefix
listings (`state_keys`); a key already there is not rewritten, so a block of transfers, which
only updates values, dirties none of its pages. It used to hold the values too: at 300,000
accounts a block's random writes then dirtied a page each (`benchmarks/tx_cost.py --accounts
300000`: 299 us a transfer before, 257-294 after; the process's system time 2.0 s before,
0.4-2.5 after; at 10,000 accounts no difference).

Must never: interpret transactions or decide anything; it stores what the node hands it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import lmdb
import msgspec

from consortia.storage.tree_table import (
    TreeWrite,
    read_nodes,
    stale_count,
    write_tree,
)
from consortia.types.consensus import (
    Block,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    ReputationState,
    SafetyState,
)
from consortia.types.encoding import decode, encode
from consortia.types.execution import ExecutionCertificate, ExecutionHeader

# The map is sparse: it reserves address space, not disk.
MAP_SIZE_DEFAULT: Final = 64 * 1024**3
_TABLES: Final = (
    b"meta",
    b"blocks",
    b"ids",
    b"certs",
    b"receipts",
    b"state",
    b"safety",
    b"epochs",
    b"tree_nodes",
    b"tree_stale",
)
# Room for a few more tables without a change of layout.
_TABLES_MAX: Final = 16
_HEIGHT: Final = b"height"
_STATE_ROOT: Final = b"state_root"
_STATE_OLDEST: Final = b"state_oldest"
# The most keys one prefix listing returns (`state_keys`).
STATE_KEYS_MAX: Final = 1024
_EPOCH_CONFIG: Final = b"epoch_config"
_EPOCH_ROOT: Final = b"epoch_root_id"
_REPUTATION: Final = b"reputation"
_SAFETY: Final = b"state"
_VOTED: Final = b"voted:"
# Execution records and certificates, by height (types.execution; node/attestation.py).
_EXECUTION_TABLES: Final = (b"exec", b"exec_certs")


class StoredEvent(msgspec.Struct, frozen=True, array_like=True):
    contract: str
    name: str
    fields: dict[str, Any]


class StoredReceipt(msgspec.Struct, frozen=True, array_like=True):
    """A transaction's receipt, where it sits in the chain, and what it produced."""

    tx_id: bytes
    height: int
    index: int
    ok: bool
    code: str
    message: str
    gas_used: int
    events: list[StoredEvent]
    result: Any = None


class CommitRecord(msgspec.Struct, frozen=True, array_like=True):
    """What proves a block committed: its QC and the QC of its child (the two-chain)."""

    certificate: QuorumCertificate
    proof: QuorumCertificate


class ExecutionRecord(msgspec.Struct, frozen=True, array_like=True):
    """What this node's execution of a block produced: the header it signs and the leaf
    hashes of the block's receipts in order (to prove any one of them)."""

    header: ExecutionHeader
    receipt_leaves: list[bytes]


@dataclass(frozen=True, slots=True)
class Tip:
    """The last committed block and what a restarted node needs with it."""

    height: int
    block: Block
    block_id: bytes
    certificate: QuorumCertificate
    proof: QuorumCertificate
    state_root: bytes
    epoch_config: EpochConfig
    epoch_root_id: bytes


def _present(data: bytes | None) -> bytes:
    """A value the store's own invariants say is there; its absence is a corrupt store."""
    assert data is not None, "the store is missing a record it must hold"
    return bytes(data)


def _height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


class NodeStore:
    def __init__(
        self, path: Path, *, map_size: int = MAP_SIZE_DEFAULT, durable: bool = True
    ) -> None:
        """`durable=False` skips fsync: only for benchmarks that build a store to measure
        reading it; a node never passes it."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=_TABLES_MAX,
            sync=durable,
            metasync=durable,
            subdir=True,
            lock=True,
        )
        self._db = {name: self._env.open_db(name) for name in _TABLES + _EXECUTION_TABLES}

    def close(self) -> None:
        self._env.close()

    # ------------------------------------------------------------------ safety

    def persist_safety(self, state: SafetyState, voted: tuple[bytes, Block] | None) -> None:
        """The safety state (and the block voted for) on disk: durable when this returns."""
        with self._env.begin(write=True) as txn:
            txn.put(_SAFETY, encode(state), db=self._db[b"safety"])
            if voted is not None:
                voted_id, block = voted
                txn.put(_VOTED + voted_id, encode(block), db=self._db[b"safety"])

    def safety_state(self) -> SafetyState | None:
        with self._env.begin() as txn:
            data = txn.get(_SAFETY, db=self._db[b"safety"])
        return None if data is None else decode(bytes(data), SafetyState)

    def voted_blocks(self) -> list[Block]:
        with self._env.begin() as txn, txn.cursor(db=self._db[b"safety"]) as cursor:
            cursor.set_range(_VOTED)
            blocks = []
            for key, value in cursor:
                if not bytes(key).startswith(_VOTED):
                    break
                blocks.append(decode(bytes(value), Block))
        return blocks

    # ------------------------------------------------------------------ commits

    def commit_block(
        self,
        *,
        block: Block,
        block_id: bytes,
        record: CommitRecord,
        receipts: list[StoredReceipt],
        writes: dict[bytes, bytes | None],
        state_root: bytes,
        epoch_config: EpochConfig,
        epoch_root_id: bytes,
        reputation: ReputationState | None = None,
        execution: ExecutionRecord | None = None,
        certificates: Sequence[ExecutionCertificate] = (),
        tree: TreeWrite | None = None,
    ) -> None:
        """Everything a committed block brings, in one durable transaction. `reputation` is
        leader election's state after this block, when the replica gave one (the last block
        of a `Commit`); for any other block the stored one is dropped, as it would be stale.
        `execution` is the block's execution record (kept by height); `certificates` are
        execution certificates of earlier blocks, kept by their height. `tree`: the state
        tree's update at this height (and a bounded batch of pruning)."""
        height = block.header.height
        with self._env.begin(write=True) as txn:
            current = txn.get(_HEIGHT, db=self._db[b"meta"])
            expected = 0 if current is None else int.from_bytes(current, "big")
            assert height == expected + 1, f"block {height} committed after {expected}"
            key = _height_key(height)
            txn.put(key, encode(block), db=self._db[b"blocks"])
            txn.put(block_id, key, db=self._db[b"ids"])
            txn.put(key, encode(record), db=self._db[b"certs"])
            self._put_execution(txn, key, execution, certificates)
            # A transaction id has one receipt: a successful execution (a nonce runs once, so
            # there is at most one) is never replaced by a later failed copy of the same
            # transaction that a faulty leader put in a block.
            table = self._db[b"receipts"]
            for receipt in receipts:
                if receipt.ok or txn.get(receipt.tx_id, db=table) is None:
                    txn.put(receipt.tx_id, encode(receipt), db=table)
            # The committed keys (their values live in the state tree's leaves): a key already
            # there is looked up, not rewritten, so a block that only updates values dirties
            # no page of this table.
            state = self._db[b"state"]
            for state_key in sorted(writes):
                if writes[state_key] is None:
                    txn.delete(state_key, db=state)
                else:
                    txn.put(state_key, b"", overwrite=False, db=state)
            meta = self._db[b"meta"]
            txn.put(_HEIGHT, key, db=meta)
            txn.put(_STATE_ROOT, state_root, db=meta)
            txn.put(_EPOCH_CONFIG, encode(epoch_config), db=meta)
            txn.put(_EPOCH_ROOT, epoch_root_id, db=meta)
            if reputation is None:
                txn.delete(_REPUTATION, db=meta)
            else:
                txn.put(_REPUTATION, encode(reputation), db=meta)
            # Voted blocks at or below the committed height are settled.
            safety = self._db[b"safety"]
            with txn.cursor(db=safety) as cursor:
                stale = []
                if cursor.set_range(_VOTED):
                    for voted_key, value in cursor:
                        if not bytes(voted_key).startswith(_VOTED):
                            break
                        if decode(bytes(value), Block).header.height <= height:
                            stale.append(bytes(voted_key))
            for voted_key in stale:
                txn.delete(voted_key, db=safety)
            assert tree is None or tree.version == height, "the tree's version is the height"
            self._write_tree(txn, tree)

    def _write_tree(self, txn: lmdb.Transaction, tree: TreeWrite | None) -> None:
        if tree is None:
            return
        nodes, stale = self._db[b"tree_nodes"], self._db[b"tree_stale"]
        write_tree(txn, nodes, stale, tree, _height_key(tree.version))
        txn.put(_STATE_OLDEST, _height_key(tree.oldest), db=self._db[b"meta"])

    def initialise(
        self,
        *,
        state: dict[bytes, bytes],
        state_root: bytes,
        epoch_config: EpochConfig,
        genesis_id: bytes,
        tree: TreeWrite | None = None,
    ) -> None:
        """The genesis state, at height 0, once (with its state tree, version 0)."""
        with self._env.begin(write=True) as txn:
            meta = self._db[b"meta"]
            assert txn.get(_HEIGHT, db=meta) is None, "the store is initialised once"
            for key in sorted(state):
                txn.put(key, b"", db=self._db[b"state"])
            txn.put(_HEIGHT, _height_key(0), db=meta)
            txn.put(_STATE_ROOT, state_root, db=meta)
            txn.put(_EPOCH_CONFIG, encode(epoch_config), db=meta)
            txn.put(_EPOCH_ROOT, genesis_id, db=meta)
            assert tree is None or (tree.version == 0 and not tree.stale)
            self._write_tree(txn, tree)

    def save_epoch_proof(self, response: EpochChangeResponse) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(_height_key(response.ending.epoch), encode(response), db=self._db[b"epochs"])

    def _put_execution(
        self,
        txn: lmdb.Transaction,
        key: bytes,
        execution: ExecutionRecord | None,
        certificates: Sequence[ExecutionCertificate],
    ) -> None:
        if execution is not None:
            txn.put(key, encode(execution), db=self._db[b"exec"])
        for certificate in certificates:
            height = _height_key(certificate.header.height)
            txn.put(height, encode(certificate), db=self._db[b"exec_certs"])

    def save_execution_certificates(self, certificates: Sequence[ExecutionCertificate]) -> None:
        """Quorums' certificates of committed blocks' execution headers (durable)."""
        with self._env.begin(write=True) as txn:
            for certificate in certificates:
                key = _height_key(certificate.header.height)
                txn.put(key, encode(certificate), db=self._db[b"exec_certs"])

    # ------------------------------------------------------------------ reads

    def execution_record(self, height: int) -> ExecutionRecord | None:
        with self._env.begin() as txn:
            data = txn.get(_height_key(height), db=self._db[b"exec"])
        return None if data is None else decode(bytes(data), ExecutionRecord)

    def execution_certificate(self, height: int) -> ExecutionCertificate | None:
        with self._env.begin() as txn:
            data = txn.get(_height_key(height), db=self._db[b"exec_certs"])
        return None if data is None else decode(bytes(data), ExecutionCertificate)

    def epoch_proof(self, epoch: int) -> EpochChangeResponse | None:
        """The proof that `epoch` ended (its last block and the QCs that committed it)."""
        with self._env.begin() as txn:
            data = txn.get(_height_key(epoch), db=self._db[b"epochs"])
        return None if data is None else decode(bytes(data), EpochChangeResponse)

    @property
    def height(self) -> int | None:
        """The committed height, or None before the genesis state is stored."""
        with self._env.begin() as txn:
            data = txn.get(_HEIGHT, db=self._db[b"meta"])
        return None if data is None else int.from_bytes(data, "big")

    def tip(self) -> Tip | None:
        """The last committed block, or None at height 0."""
        with self._env.begin() as txn:
            meta = self._db[b"meta"]
            data = txn.get(_HEIGHT, db=meta)
            if data is None or int.from_bytes(data, "big") == 0:
                return None
            key = bytes(data)
            block = decode(_present(txn.get(key, db=self._db[b"blocks"])), Block)
            record = decode(_present(txn.get(key, db=self._db[b"certs"])), CommitRecord)
            return Tip(
                height=int.from_bytes(key, "big"),
                block=block,
                block_id=record.certificate.block_id,
                certificate=record.certificate,
                proof=record.proof,
                state_root=_present(txn.get(_STATE_ROOT, db=meta)),
                epoch_config=decode(_present(txn.get(_EPOCH_CONFIG, db=meta)), EpochConfig),
                epoch_root_id=_present(txn.get(_EPOCH_ROOT, db=meta)),
            )

    def state_root(self) -> bytes | None:
        """The state root of the committed height (genesis included), or None before it."""
        with self._env.begin() as txn:
            data = txn.get(_STATE_ROOT, db=self._db[b"meta"])
        return None if data is None else bytes(data)

    def state_oldest(self) -> int:
        """The oldest height whose state tree is kept (0 until pruning starts)."""
        with self._env.begin() as txn:
            data = txn.get(_STATE_OLDEST, db=self._db[b"meta"])
        return 0 if data is None else int.from_bytes(data, "big")

    def tree_node(self, key: bytes) -> bytes | None:
        """A state tree node by its key bytes (the engine's reader), or None."""
        with self._env.begin() as txn:
            data = txn.get(key, db=self._db[b"tree_nodes"])
        return None if data is None else bytes(data)

    def tree_nodes(self, keys: list[bytes]) -> list[bytes | None]:
        """State tree nodes by their key bytes, in the order asked (None where missing), from
        one read transaction: for walking a whole stored tree at a restart."""
        with self._env.begin() as txn:
            return read_nodes(txn, self._db[b"tree_nodes"], keys)

    def tree_counts(self) -> tuple[int, int]:
        """(state tree nodes, stale nodes not yet pruned) held: for tests (reads every
        stale list)."""
        with self._env.begin() as txn:
            nodes = txn.stat(self._db[b"tree_nodes"])["entries"]
            return nodes, stale_count(txn, self._db[b"tree_stale"])

    def reputation(self) -> ReputationState | None:
        """Leader election's state after the last committed block, if it was stored."""
        with self._env.begin() as txn:
            data = txn.get(_REPUTATION, db=self._db[b"meta"])
        return None if data is None else decode(bytes(data), ReputationState)

    def epoch_config(self) -> EpochConfig | None:
        with self._env.begin() as txn:
            data = txn.get(_EPOCH_CONFIG, db=self._db[b"meta"])
        return None if data is None else decode(bytes(data), EpochConfig)

    def block(self, height: int) -> Block | None:
        with self._env.begin() as txn:
            data = txn.get(_height_key(height), db=self._db[b"blocks"])
        return None if data is None else decode(bytes(data), Block)

    def height_of(self, block_id: bytes) -> int | None:
        with self._env.begin() as txn:
            data = txn.get(block_id, db=self._db[b"ids"])
        return None if data is None else int.from_bytes(data, "big")

    def commit_record(self, height: int) -> CommitRecord | None:
        with self._env.begin() as txn:
            data = txn.get(_height_key(height), db=self._db[b"certs"])
        return None if data is None else decode(bytes(data), CommitRecord)

    def receipt(self, tx_id: bytes) -> StoredReceipt | None:
        with self._env.begin() as txn:
            data = txn.get(tx_id, db=self._db[b"receipts"])
        return None if data is None else decode(bytes(data), StoredReceipt)

    def state_keys(self, prefix: bytes, limit: int = STATE_KEYS_MAX) -> list[bytes]:
        """Committed keys starting with `prefix`, in key order, at most `limit` (a range
        read of the ordered table: cost grows with what is found, not with the state)."""
        found: list[bytes] = []
        with self._env.begin() as txn, txn.cursor(db=self._db[b"state"]) as cursor:
            if not cursor.set_range(prefix):
                return found
            for key in cursor.iternext(values=False):
                if not bytes(key).startswith(prefix) or len(found) >= limit:
                    break
                found.append(bytes(key))
        return found

    def epoch_proofs(self) -> list[EpochChangeResponse]:
        with self._env.begin() as txn, txn.cursor(db=self._db[b"epochs"]) as cursor:
            return [decode(bytes(value), EpochChangeResponse) for _, value in cursor]

    def blocks_of_epoch(self, epoch: int, up_to: int) -> list[Block]:
        """The committed blocks of `epoch` up to height `up_to`, oldest first (for leader
        reputation after a restart): walks back from `up_to` while the epoch holds."""
        blocks: list[Block] = []
        with self._env.begin() as txn:
            for height in range(up_to, 0, -1):
                data = txn.get(_height_key(height), db=self._db[b"blocks"])
                if data is None:
                    break
                block = decode(bytes(data), Block)
                if block.header.epoch != epoch:
                    break
                blocks.append(block)
        blocks.reverse()
        return blocks
