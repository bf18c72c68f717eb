"""Checking and re-executing a node's blocks: what the mirror may write, and nothing else.

The mirror trusts the genesis document and the project's own deterministic engine, never the
node it follows. For each height the node serves the block's canonical encoding and (once
formed) its execution certificate. `Replayer.apply` checks, in order:

1. the block decodes canonically, is of the chain, at the next height, and its parent is the
   block written before it (a hash chain from the genesis block);
2. its payload is the one the header commits to (payload root and count);
3. with a certificate: a quorum of the validators of the block's epoch (learnt from the
   genesis through epoch proofs, `client/light.py`) signed an execution header of exactly
   this height, epoch and block id;
4. the block is executed by the mirror's own engine, from the state it reached by executing
   every block before it, and the state root and receipts root it computes must be the
   certified ones.

So every receipt, event and state change the mirror writes is what its own engine computed
from certified blocks, and its state is the certified state. A height the node holds no
certificate for is executed and kept pending (up to `PENDING_BLOCKS_MAX`): it becomes
writable when a later certified block descends from it (its parent chain binds it) and the
state root reached there is the certified one.

Owns these checks and the engine the mirror executes with. Pure: no I/O, no clock (the
follower fetches what `needs_epoch` names and hands answers in). Must never return a block
for writing that a check did not pass; after any failed check the replayer is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consortia.client.light import LightClient, VerificationError
from consortia.consensus.config import genesis_block
from consortia.crypto import suite as get_suite
from consortia.errors import ConsortiaError
from consortia.execution.builtin import BUILTIN_CONTRACTS, SUPPORTED_PROTOCOL_VERSIONS
from consortia.execution.engine import Engine, KnownTransactions
from consortia.execution.genesis import engine_from_genesis
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore
from consortia.execution.registry import UnknownContractCodeError
from consortia.mirror.errors import (
    MirrorCorruptError,
    MirrorExecutionError,
    MirrorVerificationError,
)
from consortia.types.consensus import Block
from consortia.types.encoding import decode, encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    TxReceipt,
    receipt_leaf,
    receipts_root,
)
from consortia.types.genesis import Genesis
from consortia.types.signing import block_id, merkle_root, transaction_id
from consortia.types.state_proof import STATE_HISTORY_HEIGHTS_MIN
from consortia.types.transaction import Transaction

# Executed blocks kept waiting for a later certified block (heights the node holds no
# certificate for); the follower waits rather than executing further ahead.
PENDING_BLOCKS_MAX: Final = 256
# Signatures verified together (on every core) before a block executes.
SIGNATURE_BATCH_MIN: Final = 32


@dataclass(frozen=True, slots=True)
class Position:
    """Where the mirror stands: the last block it wrote and the state after it."""

    height: int
    block_id: bytes
    state_root: bytes


@dataclass(frozen=True, slots=True)
class MirroredBlock:
    """One block as the mirror executed it: what it writes."""

    block: Block
    block_id: bytes
    state_root: bytes
    receipts_root: bytes
    # The block's own execution certificate, when the node held one (else a later block's
    # certificate vouches for it through the parent chain).
    certificate: ExecutionCertificate | None
    # (raw bytes, transaction id, the decoded transaction or None for undecodable bytes)
    transactions: list[tuple[bytes, bytes, Transaction | None]]
    receipts: list[TxReceipt]
    # The engine's writes: full state key -> new value (None: deleted).
    writes: dict[bytes, bytes | None]

    @property
    def height(self) -> int:
        return self.block.header.height


class Replayer:
    """The light client and the engine, at the mirror's position."""

    def __init__(self, genesis: Genesis, engine: Engine, nodes: MemoryNodeStore) -> None:
        self.genesis = genesis
        self.suite = get_suite(genesis.suite)
        self.light = LightClient(genesis)
        self._engine = engine
        self._nodes = nodes
        genesis_id = block_id(self.suite, genesis_block_of(genesis).header)
        self._tip = Position(engine.height, genesis_id, engine.root)
        self.pending: list[MirroredBlock] = []
        self._spent = False

    # ------------------------------------------------------------------ starting

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Replayer:
        """At height 0: the genesis state (see `genesis_state`)."""
        nodes = MemoryNodeStore()
        engine = _engine(genesis, nodes, initialise=True)
        _keep(engine, nodes)
        return cls(genesis, engine, nodes)

    @classmethod
    def resume(cls, genesis: Genesis, at: Position, values: dict[bytes, bytes]) -> Replayer:
        """At `at`, from the current values the database holds: the state tree is rebuilt
        from them (its root depends only on the keys and values) and must have the state
        root recorded with that height, which was certified; MirrorCorruptError otherwise."""
        nodes = MemoryNodeStore()
        tree = JellyfishTree(get_suite(genesis.suite), nodes.read)
        update = tree.apply(at.height, values)
        nodes.write(update)
        if update.root != at.state_root:
            raise MirrorCorruptError(
                f"the database's current state has root {update.root.hex()}, not the state "
                f"root {at.state_root.hex()} recorded at height {at.height}"
            )
        engine = _engine(genesis, nodes, initialise=False)
        engine.restore(at.height, values, at.state_root, at.height)
        replayer = cls(genesis, engine, nodes)
        replayer._tip = at
        return replayer

    def genesis_state(self) -> dict[bytes, bytes | None]:
        """The state at height 0 (what the mirror writes as height 0's changes)."""
        assert self._engine.height == 0
        return dict(self._engine.state.current)

    @property
    def height(self) -> int:
        """The height executed last (verified or pending)."""
        return self._tip.height

    @property
    def position(self) -> Position:
        return self._tip

    # ------------------------------------------------------------------ epochs

    def needs_epoch(self, epoch: int) -> int | None:
        """The epoch whose end must be proven next to check a certificate of `epoch`, or
        None; MirrorVerificationError for an epoch no honest answer names."""
        try:
            self.light.follow_limit(epoch)
        except VerificationError as error:
            raise MirrorVerificationError(error.what, error.message) from None
        return self.light.needs(epoch)

    def learn_epoch(self, encoded_proof: bytes) -> None:
        try:
            self.light.learn_epoch(encoded_proof)
        except VerificationError as error:
            raise MirrorVerificationError(error.what, error.message) from None

    # ------------------------------------------------------------------ blocks

    def apply(
        self, height: int, encoded: bytes, certificate: ExecutionCertificate | None
    ) -> list[MirroredBlock]:
        """Check and execute block `height` (the next one); the blocks now verified, in
        order, for writing: the pending ones and this one once a certificate vouches for
        them, none while this one waits for one. MirrorVerificationError when a check
        fails (the replayer is then spent)."""
        assert not self._spent, "a replayer that failed a check is not used again"
        assert height == self._tip.height + 1, "blocks are applied in order"
        if certificate is None and len(self.pending) >= PENDING_BLOCKS_MAX:
            raise AssertionError("the follower waits while PENDING_BLOCKS_MAX blocks pend")
        self._spent = True  # until every check below passed
        block = self._checked_block(height, encoded)
        new_id = block_id(self.suite, block.header)
        header = (
            None if certificate is None else self._certified(height, block, new_id, certificate)
        )
        mirrored = self._execute(block, new_id, certificate)
        if header is not None:
            if mirrored.state_root != header.state_root:
                raise MirrorVerificationError(
                    "state_root",
                    f"executing the block gives {mirrored.state_root.hex()}; the certificate "
                    f"says {header.state_root.hex()}",
                    height,
                )
            if mirrored.receipts_root != header.receipts_root:
                raise MirrorVerificationError(
                    "receipts_root",
                    f"executing the block gives {mirrored.receipts_root.hex()}; the "
                    f"certificate says {header.receipts_root.hex()}",
                    height,
                )
        self._spent = False
        self._tip = Position(height, new_id, mirrored.state_root)
        if header is None:
            self.pending.append(mirrored)
            return []
        verified, self.pending = [*self.pending, mirrored], []
        return verified

    def _checked_block(self, height: int, encoded: bytes) -> Block:
        try:
            block: Block = decode(encoded, Block)
        except ConsortiaError as error:
            raise MirrorVerificationError(
                "block", f"not a canonical block: {error}", height
            ) from None
        header = block.header
        if header.height != height:
            raise MirrorVerificationError(
                "block", f"the block is of height {header.height}", height
            )
        if header.chain_id != self.genesis.chain_id:
            raise MirrorVerificationError("block", f"of chain {header.chain_id!r}", height)
        if header.parent_id != self._tip.block_id:
            raise MirrorVerificationError(
                "parent",
                f"the block's parent is {header.parent_id.hex()}, not the block "
                f"{self._tip.block_id.hex()} at height {self._tip.height}",
                height,
            )
        if header.payload_count != len(block.payload) or header.payload_root != merkle_root(
            self.suite, list(block.payload)
        ):
            raise MirrorVerificationError(
                "payload", "the transactions are not the ones the header commits to", height
            )
        return block

    def _certified(
        self, height: int, block: Block, new_id: bytes, certificate: ExecutionCertificate
    ) -> ExecutionHeader:
        try:
            header = self.light.verify_certificate(certificate, height)
        except VerificationError as error:
            raise MirrorVerificationError(error.what, error.message, height) from None
        if header.block_id != new_id or header.epoch != block.header.epoch:
            raise MirrorVerificationError(
                "block_id",
                f"the block hashes to {new_id.hex()} (epoch {block.header.epoch}); the "
                f"certificate names {header.block_id.hex()} (epoch {header.epoch})",
                height,
            )
        return header

    def _execute(
        self, block: Block, new_id: bytes, certificate: ExecutionCertificate | None
    ) -> MirroredBlock:
        header = block.header
        transactions, known = self._decoded(list(block.payload))
        engine = self._engine
        try:
            result = engine.execute_block(
                header.height, header.timestamp_ms, block.payload, known=known
            )
        except (ConsortiaError, UnknownContractCodeError) as error:
            raise MirrorExecutionError(f"height {header.height}: {error}") from None
        root = engine.commit()
        _keep(engine, self._nodes)
        receipts = [
            receipt.canonical(header.height, index) for index, receipt in enumerate(result.receipts)
        ]
        leaves = [receipt_leaf(self.suite, encode(receipt)) for receipt in receipts]
        return MirroredBlock(
            block=block,
            block_id=new_id,
            state_root=root,
            receipts_root=receipts_root(self.suite, leaves),
            certificate=certificate,
            transactions=transactions,
            receipts=receipts,
            writes=dict(engine.last_writes),
        )

    def _decoded(
        self, payload: list[bytes]
    ) -> tuple[list[tuple[bytes, bytes, Transaction | None]], KnownTransactions | None]:
        """Each payload item with its id and decoded form (None: bytes that are no
        transaction), and, for a block of at least SIGNATURE_BATCH_MIN transactions, the
        ones whose signature verified in one batch over every core (the engine then skips
        its own check of those; the others it checks and fails exactly as every validator
        did)."""
        decoded: list[tuple[bytes, bytes, Transaction | None]] = []
        for raw in payload:
            try:
                tx: Transaction | None = decode(raw, Transaction)
            except ConsortiaError:
                tx = None
            tx_id = (
                self._engine.receipt_id(raw) if tx is None else transaction_id(self.suite, tx.body)
            )
            decoded.append((raw, tx_id, tx))
        signed = [(raw, tx_id, tx) for raw, tx_id, tx in decoded if tx is not None]
        if len(signed) < SIGNATURE_BATCH_MIN:
            return decoded, None
        domain = self._engine.domain
        checks = self.suite.verify_many(
            [
                (tx.body.public_key, domain.signing_bytes(tx.body), tx.signature)
                for _, _, tx in signed
            ]
        )
        verified = {
            raw: (tx_id, tx) for (raw, tx_id, tx), ok in zip(signed, checks, strict=True) if ok
        }
        return decoded, verified.get


def genesis_block_of(genesis: Genesis) -> Block:
    """Height 0 of the chain, as every node computes it from the genesis document."""
    return genesis_block(
        get_suite(genesis.suite),
        genesis.chain_id,
        genesis.protocol_version,
        genesis.genesis_time_ms,
    )


def _engine(genesis: Genesis, nodes: MemoryNodeStore, *, initialise: bool) -> Engine:
    return engine_from_genesis(
        genesis,
        BUILTIN_CONTRACTS,
        supported_protocols=SUPPORTED_PROTOCOL_VERSIONS,
        initialise=initialise,
        nodes=nodes.read,
        history_heights=STATE_HISTORY_HEIGHTS_MIN,
    )


def _keep(engine: Engine, nodes: MemoryNodeStore) -> None:
    """Store the engine's last tree update in memory and prune what no kept height reaches."""
    update = engine.last_update
    assert update is not None
    nodes.write(update)
    nodes.prune(engine.oldest_height)
