"""The node's ledger: the execution engine and the durable store, kept in step.

Owns executing committed blocks and recording them. A `Commit` from the replica runs each
block through the engine, then writes the block, its certificates, its receipts, its state
writes, the new state root, the state tree's new and stale nodes (and a bounded batch of
pruning) and the epoch bookkeeping to the store in one durable transaction, before anyone is
told the block is committed. With them goes the block's execution record: the
`ExecutionHeader` (block id, state root, receipts root) the validators sign and certify
(`node/attestation.py`), and its receipts' leaf hashes, to prove any one of them. The engine
reads tree nodes it does not hold from the store. A restarted node reopens the engine's state
tree at the stored root (and loads the current values) instead of re-executing the chain, and
rebuilds its replica from what the store kept.

Must never decide anything about consensus (the replica does) nor admit transactions (the
mempool does); it reads the clock and the disk only through what the node hands it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from consortia.consensus.config import Params, ReplicaSetup, genesis_block, root_qc_for
from consortia.consensus.events import Commit
from consortia.crypto import suite as get_suite
from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.committed import HISTORY_HEIGHTS_DEFAULT
from consortia.execution.contracts import governance_state, identity_state
from consortia.execution.engine import Engine, KnownTransactions, Receipt
from consortia.execution.genesis import engine_from_genesis
from consortia.execution.jmt_nodes import NodeKey, keys_as_bytes
from consortia.execution.membership import EngineMembership
from consortia.execution.values import state_key
from consortia.storage import (
    CommitRecord,
    ExecutionRecord,
    NodeStore,
    StoredEvent,
    StoredReceipt,
    TreeWrite,
)
from consortia.types.consensus import Block, EpochConfig, QuorumCertificate, Validator
from consortia.types.encoding import encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ReceiptEvent,
    TxReceipt,
    receipt_leaf,
    receipts_root,
)
from consortia.types.genesis import Genesis, genesis_hash
from consortia.types.signing import block_id
from consortia.types.state_proof import StateAnswer


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A block as it was recorded: what the node tells the API and the mempool."""

    block: Block
    block_id: bytes
    state_root: bytes
    receipts: list[StoredReceipt]
    # What this node's execution of the block led to, as the validators sign it.
    execution: ExecutionHeader | None = None


def genesis_epoch(genesis: Genesis) -> EpochConfig:
    """Epoch 0's validator set, from the genesis document."""
    validators = sorted(
        (
            Validator(bytes.fromhex(v.node_id), bytes.fromhex(v.public_key), v.voting_power)
            for v in genesis.validators
        ),
        key=lambda v: v.node_id,
    )
    return EpochConfig(epoch=0, validators=validators)


# The most accounts whose next nonce is remembered between two commits.
NONCE_CACHE_MAX: Final = 100_000
# What `Chain._nonces` holds for an account it has not read yet (None is "no account").
_UNCACHED: Final = -1


class Chain:
    def __init__(
        self,
        genesis: Genesis,
        store: NodeStore,
        *,
        state_history_heights: int = HISTORY_HEIGHTS_DEFAULT,
    ) -> None:
        """`state_history_heights`: how many heights back state reads and proofs are
        answered (older state tree nodes are pruned)."""
        self.genesis = genesis
        self.genesis_hash = genesis_hash(genesis)
        self.store = store
        self.suite = get_suite(genesis.suite)
        self.genesis_block = genesis_block_of(genesis)
        self.genesis_id = block_id(self.suite, self.genesis_block.header)
        stored = store.height
        self.engine = engine_from_genesis(
            genesis,
            BUILTIN_CONTRACTS,
            initialise=stored is None,
            nodes=_node_reader(store),
            history_heights=state_history_heights,
        )
        if stored is None:
            store.initialise(
                state=dict(self.engine.state.current),
                state_root=self.engine.root,
                epoch_config=genesis_epoch(genesis),
                genesis_id=self.genesis_id,
                tree=_tree_write(self.engine),
            )
        else:
            root = store.state_root()
            assert root is not None, "a store with a height has a state root"
            # The current values from the state tree's leaves, checked against the root.
            self.engine.restore(
                stored, None, root, store.state_oldest(), read_many=_nodes_reader(store)
            )
        self.membership = EngineMembership(self.engine)
        # Accounts' next nonces at the committed height (admission and batching ask for the
        # same senders many times a block); emptied whenever a block commits.
        self._nonces: dict[str, int | None] = {}
        self._founders = {bytes.fromhex(v.node_id): v.member for v in genesis.validators}

    @property
    def height(self) -> int:
        return self.engine.height

    # ------------------------------------------------------------------ the replica

    def replica_setup(self, *, private_key: bytes, node_id: bytes, params: Params) -> ReplicaSetup:
        """Everything a (re)starting replica needs, from the store."""
        store = self.store
        tip = store.tip()
        commit_proof: QuorumCertificate | None = None
        if tip is None:
            config = genesis_epoch(self.genesis)
            root, root_id, epoch_root_id = self.genesis_block, self.genesis_id, self.genesis_id
            root_qc = root_qc_for(self.suite, root, 0)
        else:
            config, root, root_id = tip.epoch_config, tip.block, tip.block_id
            epoch_root_id = tip.epoch_root_id
            commit_proof = tip.proof
            root_qc = (
                root_qc_for(self.suite, root, config.epoch)
                if root_id == epoch_root_id
                else tip.certificate
            )
        # Leader reputation: the state stored with the last commit, or (a store from before
        # it was kept, or a crash between the blocks of one commit) a replay of the epoch.
        reputation = store.reputation()
        if reputation is not None and reputation.epoch != config.epoch:
            reputation = None
        recent: list[Block] = []
        if reputation is None and tip is not None:
            recent = store.blocks_of_epoch(config.epoch, tip.height)
        return ReplicaSetup(
            chain_id=self.genesis.chain_id,
            genesis_hash=self.genesis_hash,
            suite=self.suite,
            private_key=private_key,
            node_id=node_id,
            protocol_version=self.genesis.protocol_version,
            epoch_config=config,
            root=root,
            root_qc=root_qc,
            epoch_root_id=epoch_root_id,
            params=params,
            safety_state=store.safety_state(),
            recent_committed=recent,
            reputation=reputation,
            checker=self.membership,
            epoch_proofs=store.epoch_proofs(),
            voted_blocks=store.voted_blocks(),
            commit_proof=commit_proof,
        )

    # ------------------------------------------------------------------ commits

    def apply(
        self,
        commit: Commit,
        *,
        known: KnownTransactions | None = None,
        certificates: Sequence[ExecutionCertificate] = (),
    ) -> list[CommittedBlock]:
        """Execute and durably record the blocks a `Commit` made final, in order, and with
        the first of them the execution certificates of earlier blocks formed since."""
        recorded = []
        self._nonces.clear()
        tip = self.store.tip()
        config = tip.epoch_config if tip is not None else genesis_epoch(self.genesis)
        epoch_root_id = tip.epoch_root_id if tip is not None else self.genesis_id
        blocks = commit.blocks
        for index, block in enumerate(blocks):
            header = block.header
            new_id = block_id(self.suite, header)
            result = self.engine.execute_block(
                header.height,
                header.timestamp_ms,
                block.payload,
                known=known,
            )
            root = self.engine.commit()
            certificate = (
                blocks[index + 1].header.justify if index + 1 < len(blocks) else commit.certificate
            )
            receipts = [
                _stored(receipt, header.height, position)
                for position, receipt in enumerate(result.receipts)
            ]
            leaves = [
                receipt_leaf(self.suite, encode(receipt.canonical(header.height, position)))
                for position, receipt in enumerate(result.receipts)
            ]
            execution = ExecutionHeader(
                chain_id=header.chain_id,
                epoch=header.epoch,
                height=header.height,
                block_id=new_id,
                state_root=root,
                receipts_root=receipts_root(self.suite, leaves),
            )
            if header.next_epoch is not None:
                config, epoch_root_id = header.next_epoch, new_id
            self.store.commit_block(
                block=block,
                block_id=new_id,
                record=CommitRecord(certificate=certificate, proof=commit.proof),
                receipts=receipts,
                writes=self.engine.last_writes,
                state_root=root,
                epoch_config=config,
                epoch_root_id=epoch_root_id,
                reputation=commit.reputation if index == len(blocks) - 1 else None,
                execution=ExecutionRecord(execution, leaves),
                certificates=certificates if index == 0 else (),
                tree=_tree_write(self.engine),
            )
            recorded.append(CommittedBlock(block, new_id, root, receipts, execution))
        return recorded

    # ------------------------------------------------------------------ reads

    def next_nonce(self, account: str) -> int | None:
        """The nonce an account's next transaction must carry, or None for no account."""
        nonce = self._nonces.get(account, _UNCACHED)
        if nonce != _UNCACHED:
            return nonce
        record = identity_state.read_account(self.engine.query, account)
        nonce = None if record is None else int(record.get("nonce", 0))
        if len(self._nonces) >= NONCE_CACHE_MAX:
            self._nonces.clear()
        self._nonces[account] = nonce
        return nonce

    def peer_allowed(self, node_id: bytes) -> bool:
        """Whether a peer holding a CA-issued certificate for `node_id` may link to this node:
        it is a validator of the epoch running now or of the set committed governance has
        chosen (so a validator added by governance can join), and the member institution that
        runs it has not had its certificate revoked. Every other id is refused."""
        tip = self.store.tip()
        running = tip.epoch_config if tip is not None else genesis_epoch(self.genesis)
        chosen = governance_state.validator_members(self.engine.query)
        if node_id not in chosen and all(v.node_id != node_id for v in running.validators):
            return False
        member = chosen.get(node_id) or self._founders.get(node_id)
        if member is None:
            return True  # added without naming its member: its certificate vouches alone
        record = identity_state.read_member(self.engine.query, member)
        return record is not None and not record.get("certificate_revoked", False)

    def query(self, contract: str, key: str, height: int | None = None) -> Any:
        return self.engine.query(contract, key, height)

    def raw_state(self, contract: str, key: str) -> bytes | None:
        return self.engine.state.get(state_key(contract, key))

    def state_answer(self, contract: str, key: str, height: int | None = None) -> StateAnswer:
        """`contract`'s `key` at `height` (the latest when None): its raw stored value (None:
        absent) with a proof under that height's state root. HeightUnavailableError for a
        height older than the state kept, or not yet committed."""
        return self.engine.prove(contract, key, height)


# Receipt events after which `peer_allowed` may answer differently for some peer.
MEMBERSHIP_EVENTS: Final = frozenset(
    {"certificate_revoked", "certificate_restored", "validator_set_changed"}
)


def changes_membership(committed: list[CommittedBlock]) -> bool:
    """Whether these blocks changed who may link to this node (a revocation, a new validator
    set, or an epoch hand-over): the transport then asks again about every link."""
    return any(
        entry.block.header.next_epoch is not None
        or any(e.name in MEMBERSHIP_EVENTS for r in entry.receipts for e in r.events)
        for entry in committed
    )


def genesis_block_of(genesis: Genesis) -> Block:
    """Height 0 of this chain, as every node computes it from the genesis document."""
    return genesis_block(
        get_suite(genesis.suite),
        genesis.chain_id,
        genesis.protocol_version,
        genesis.genesis_time_ms,
    )


def tx_receipt(receipt: StoredReceipt) -> TxReceipt:
    """A stored receipt in the canonical form the receipts root commits to."""
    return TxReceipt(
        tx_id=receipt.tx_id,
        height=receipt.height,
        index=receipt.index,
        ok=receipt.ok,
        code=receipt.code,
        message=receipt.message,
        gas_used=receipt.gas_used,
        events=[ReceiptEvent(e.contract, e.name, e.fields) for e in receipt.events],
        result=receipt.result,
    )


def _node_reader(store: NodeStore) -> Callable[[NodeKey], bytes | None]:
    def read(key: NodeKey) -> bytes | None:
        return store.tree_node(key.to_bytes())

    return read


def _nodes_reader(store: NodeStore) -> Callable[[list[NodeKey]], list[bytes | None]]:
    def read_many(keys: list[NodeKey]) -> list[bytes | None]:
        return store.tree_nodes(keys_as_bytes(keys))

    return read_many


def _tree_write(engine: Engine) -> TreeWrite:
    """The engine's last state tree update, as the store keeps it."""
    update = engine.last_update
    assert update is not None
    return TreeWrite(
        version=update.version,
        nodes=dict(zip(keys_as_bytes(update.nodes), update.nodes.values(), strict=True)),
        stale=keys_as_bytes(update.stale),
        oldest=engine.oldest_height,
    )


def _stored(receipt: Receipt, height: int, index: int) -> StoredReceipt:
    return StoredReceipt(
        tx_id=receipt.tx_id,
        height=height,
        index=index,
        ok=receipt.ok,
        code=receipt.code,
        message=receipt.message,
        gas_used=receipt.gas_used,
        events=[StoredEvent(e.contract, e.name, dict(e.fields)) for e in receipt.events],
        result=receipt.result,
    )
