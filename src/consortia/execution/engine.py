"""The execution engine: as narrow as an ABCI application.

    check(tx_bytes)                      -> Receipt   (would it be accepted now? no state change)
    execute_block(height, time_ms, txs)  -> BlockResult (receipts and events; writes pending)
    commit()                             -> state root
    query(contract, key, height=None)    -> value at a height
    prove(contract, key, height=None)    -> StateAnswer (value and proof under that root)

Owns: transaction admission, the order of a block's transactions, the per-call overlays
(`BlockRun` in block_run.py, the `Host` every contract call goes through), receipts, nonces,
and committing a block's writes to committed state (`committed.py`: current values in memory,
history and proofs in the versioned sparse Merkle tree, whose nodes come through an injected
reader and leave as `last_update` for the node to store).

Deterministic: the same blocks give the same receipts and roots on every machine. The only
clock is the block's agreed `time_ms`; there is no randomness, no I/O and no floating point.
The engine never raises out of a block: every malformed or unauthorised transaction yields a
failed receipt with a stable error code and changes nothing but (for a well-signed
transaction with the right nonce) the sender's nonce, so it cannot be replayed.

Must never: spell a contract's state key itself (accounts are identity's: the sender's record
is read and its nonce written at the key identity_state spells; deployment records are
`sys`'s, read through system); hand a contract anything but a `Context` over a `BlockRun`,
which holds no reference to this engine, the state tree or the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from consortia.crypto import Suite
from consortia.errors import ConsortiaError, DecodeError
from consortia.execution.block_run import BlockRun
from consortia.execution.committed import HISTORY_HEIGHTS_DEFAULT, CommittedState
from consortia.execution.contract import (
    GAS_TX_BASE,
    TX_GAS_LIMIT,
    Context,
    ContractError,
    Event,
    Meter,
    OutOfGasError,
    StateReader,
    frozen_now,
)
from consortia.execution.contracts import identity_state
from consortia.execution.jmt_nodes import NodeReader, NodesReader, TreeUpdate
from consortia.execution.registry import (
    ContractRegistry,
    UnknownContractCodeError,
)
from consortia.execution.suite_checks import SuiteChecks
from consortia.execution.values import (
    canonical,
    decode_stored,
    decode_value,
    recanonical,
    state_key,
)
from consortia.types.encoding import decode
from consortia.types.execution import ReceiptEvent, TxReceipt
from consortia.types.signing import SigningDomain, transaction_id, verify
from consortia.types.state_proof import StateAnswer
from consortia.types.transaction import Transaction, TransactionBody

# The farthest ahead a transaction may set its expiry height (about a day at one block a
# second): a signed transaction can be replayed only within a bounded window.
EXPIRY_BLOCKS_MAX = 100_000
# Receipts of bytes that are no transaction at all are named by the bytes' hash under this.
UNDECODABLE_TX_DOMAIN = b"consortia/undecodable-tx/v1\x00"

# The id and decoded form of a signed transaction whose signature the caller verified from
# exactly these bytes, or None (see `Engine.execute_block`).
KnownTransactions = Callable[[bytes], tuple[bytes, Transaction] | None]


class Receipt(msgspec.Struct, frozen=True):
    """What one transaction (or a check, or a signed read) came to. A frozen msgspec struct
    rather than a frozen dataclass: one is built per transaction, and a struct is built in
    a tenth of the time."""

    tx_id: bytes
    ok: bool
    code: str  # "ok" or a stable error code
    message: str
    gas_used: int
    events: tuple[Event, ...] = ()
    result: Any = None

    @classmethod
    def refused(cls, tx_id: bytes, error: ContractError, gas_used: int = 0) -> Receipt:
        return cls(tx_id, False, error.code, error.message, gas_used)

    def canonical(self, height: int, index: int) -> TxReceipt:
        """This receipt, transaction `index` of block `height`, in the canonical form the
        receipts root commits to (what nodes, the mirror and light clients hash)."""
        return TxReceipt(
            tx_id=self.tx_id,
            height=height,
            index=index,
            ok=self.ok,
            code=self.code,
            message=self.message,
            gas_used=self.gas_used,
            events=[ReceiptEvent(e.contract, e.name, dict(e.fields)) for e in self.events],
            result=self.result,
        )


@dataclass(slots=True)
class BlockResult:
    height: int
    receipts: list[Receipt]

    @property
    def events(self) -> list[Event]:
        return [event for receipt in self.receipts for event in receipt.events]


class ProtocolUnsupportedError(ConsortiaError):
    """The chain runs (or is about to run) a protocol version this node does not support.

    Raised before a block executes, never half way: the node stops with this message rather
    than compute results that differ from the upgraded nodes'."""

    code = "protocol_unsupported"


ProtocolGuard = Callable[[StateReader, int, tuple[int, ...]], str | None]


class Engine:
    def __init__(
        self,
        suite: Suite,
        chain_id: str,
        registry: ContractRegistry,
        *,
        genesis_hash: bytes,
        supported_protocols: tuple[int, ...] = (1,),
        protocol_guard: ProtocolGuard | None = None,
        nodes: NodeReader | None = None,
        history_heights: int = HISTORY_HEIGHTS_DEFAULT,
    ) -> None:
        """`nodes` reads the state tree's nodes from the node's store (which then stores each
        `last_update`); without it they stay in memory. `history_heights`: how many heights
        back reads and proofs are answered."""
        self.suite = suite
        self._checks = SuiteChecks(suite, chain_id, genesis_hash)
        self.chain_id = chain_id
        # Transactions are signed for this chain's genesis, not only its chain id.
        self.domain = SigningDomain(genesis_hash)
        self.registry = registry
        self.supported_protocols = supported_protocols
        self._protocol_guard = protocol_guard
        self.state = CommittedState(suite, nodes, history_heights=history_heights)
        self._pending: BlockRun | None = None
        self.last_writes: dict[bytes, bytes | None] = {}

    # ------------------------------------------------------------------ genesis

    def initialise(self, writes: Mapping[str, Mapping[str, Any]]) -> bytes:
        """Load the genesis state (contract -> key -> value) at height 0; return its root."""
        assert self.state.height == 0 and self._pending is None
        encoded: dict[bytes, bytes] = {}
        for contract, entries in writes.items():
            for key, value in entries.items():
                encoded[state_key(contract, key)] = canonical(value)
        return self.state.initialise(encoded)

    # ------------------------------------------------------------------ ABCI-like interface

    def check(self, tx_bytes: bytes) -> Receipt:
        """Would this transaction be accepted against committed state? Changes nothing."""
        tx_id, tx = self._decode(tx_bytes)
        try:
            self._admit(self._run(self.state.height + 1, 0), tx)
        except ContractError as error:
            return Receipt.refused(tx_id, error)
        return Receipt(tx_id, True, "ok", "", 0)

    def view(self, tx_bytes: bytes, height: int | None = None) -> Receipt:
        """A signed read request: the call runs against committed state (at `height`, or the
        latest), as its signer, and everything it writes is thrown away; no nonce is spent.
        The request passes every admission check but the nonce, so only a holder of the
        account's key can read through it, and a contract's own rules (a regulator-only
        method, say) apply as they do to a transaction."""
        at = self.state.height if height is None else height
        tx_id, decoded = self._decode(tx_bytes)
        run = self._run(at + 1, 0)
        if height is not None and height < self.state.height:
            run = BlockRun(
                _AtHeight(self.state, height), self.registry.code, at + 1, 0, self._checks
            )
        try:
            tx = self._admit(run, decoded, check_nonce=False)
        except ContractError as error:
            return Receipt.refused(tx_id, error)
        run.begin()
        try:
            return self._call(run, tx_id, tx.body, base_gas=0)
        finally:
            run.discard()

    def transaction_id(self, tx_bytes: bytes) -> bytes:
        """The id receipts and lookups use: the hash of the signed body under its own tag, so
        a re-signed body is the same transaction; for bytes that are no transaction at all,
        the hash of the bytes under another tag."""
        return self._decode(tx_bytes)[0]

    def receipt_id(self, tx_bytes: bytes) -> bytes:
        """The id a transaction's receipt carries: the transaction's id, or, for bytes that
        are no transaction, their hash under a domain of their own."""
        return self._decode(tx_bytes)[0]

    def _decode(self, tx_bytes: bytes) -> tuple[bytes, Transaction | DecodeError]:
        try:
            tx = decode(tx_bytes, Transaction)
        except DecodeError as error:
            return self.suite.hash(UNDECODABLE_TX_DOMAIN + tx_bytes), error
        return transaction_id(self.suite, tx.body), tx

    def execute_block(
        self,
        height: int,
        time_ms: int,
        txs: Sequence[bytes],
        *,
        known: KnownTransactions | None = None,
    ) -> BlockResult:
        """Run a block's transactions in order. `known(tx_bytes)` may give the id and decoded
        form of a signed transaction whose signature this node already verified (its mempool
        did): decoding and the signature check are then skipped, which never changes a
        result, since a valid signature is valid on every node."""
        assert self._pending is None, "execute_block twice without commit"
        assert height == self.state.height + 1, "blocks execute in height order"
        if self._protocol_guard is not None:
            reason = self._protocol_guard(self.query, height, self.supported_protocols)
            if reason is not None:
                raise ProtocolUnsupportedError(reason)
        run = self._run(height, time_ms)
        lookup = known or _unknown
        receipts = [self._execute(run, tx_bytes, lookup(tx_bytes)) for tx_bytes in txs]
        self._pending = run
        return BlockResult(height, receipts)

    def commit(self) -> bytes:
        """Apply the executed block's writes; return the new state root. The writes stay in
        `last_writes` until the next commit, for the node to store with the block."""
        run = self._pending
        assert run is not None, "commit without execute_block"
        assert not run.open_calls
        self._pending = None
        self.last_writes = dict(run.block_writes)
        return self.state.apply(run.height, run.block_writes)

    def restore(
        self,
        height: int,
        values: dict[bytes, bytes] | None,
        root: bytes,
        oldest_height: int = 0,
        read_many: NodesReader | None = None,
    ) -> None:
        """Reopen committed state from a node's store after a restart, without re-executing
        a block: the current values as given, or (None) from the state tree's leaves (read
        through `read_many`, many nodes a store transaction, when given). A tree whose root
        differs from the stored one is a corrupt store: StateCorruptError, and the node
        stops."""
        self.state.restore(height, values, root, oldest_height, read_many)

    def query(self, contract: str, key: str, height: int | None = None) -> Any:
        return decode_value(self.state.get(state_key(contract, key), height))

    def prove(self, contract: str, key: str, height: int | None = None) -> StateAnswer:
        """The raw value of `contract`'s `key` at `height` (the latest when None) with its
        proof under that height's state root; HeightUnavailableError outside the heights
        kept."""
        full_key = state_key(contract, key)
        at, value, proof, root = self.state.prove(full_key, height)
        return StateAnswer(at, full_key, value, proof, root)

    @property
    def last_update(self) -> TreeUpdate | None:
        """The state tree's update of the last commit (or genesis), for the node to store."""
        return self.state.last_update

    @property
    def oldest_height(self) -> int:
        """The oldest height whose state is kept: nodes stale at or before it may go."""
        return self.state.oldest_height

    @property
    def height(self) -> int:
        return self.state.height

    @property
    def root(self) -> bytes:
        return self.state.root

    # ------------------------------------------------------------------ transactions

    def _run(self, height: int, time_ms: int) -> BlockRun:
        return BlockRun(self.state.current, self.registry.code, height, time_ms, self._checks)

    def _execute(
        self, run: BlockRun, tx_bytes: bytes, known: tuple[bytes, Transaction] | None
    ) -> Receipt:
        tx_id, decoded = self._decode(tx_bytes) if known is None else known
        try:
            tx, account, key = self._admit_sender(run, decoded, signature_checked=known is not None)
        except ContractError as error:
            return Receipt.refused(tx_id, error)
        body = tx.body
        # The nonce is spent even if the call fails: a signed transaction runs at most once.
        # `account` is the record admission read, a fresh copy of what is stored, so it is
        # updated in place and re-encoded without its values being checked again.
        account["nonce"] = body.nonce + 1
        run.write_between_calls(key, recanonical(account))
        run.begin()
        receipt = self._call(run, tx_id, body, base_gas=GAS_TX_BASE + len(tx_bytes))
        if receipt.ok:
            run.keep()
        else:
            run.discard()
        return receipt

    def _call(
        self, run: BlockRun, tx_id: bytes, body: TransactionBody, *, base_gas: int
    ) -> Receipt:
        """Run a signed call as its sender, in an overlay the caller opened (and then keeps or
        discards), metered from `base_gas`: the one place a transaction or a signed read
        meets its contract."""
        meter = Meter(TX_GAS_LIMIT, base_gas)
        # host, contract, caller, origin, height, time_ms, meter (positional: a little faster)
        ctx = Context(run, body.contract, body.sender, body.sender, run.height, run.time_ms, meter)
        try:
            if base_gas > TX_GAS_LIMIT:  # `Meter.charge(base_gas)`, written out
                raise OutOfGasError(TX_GAS_LIMIT)
            result = run.call(ctx, body.method, dict(body.args))
            if result is not None:
                canonical(result)  # bad_value: a result must be a value a receipt can hold
        except ContractError as error:
            return Receipt.refused(tx_id, error, meter.used)
        except (AssertionError, UnknownContractCodeError):
            raise  # a broken invariant, or code this build lacks: stop rather than diverge
        except Exception as error:  # a contract bug fails the call, not the chain or the node
            return Receipt(tx_id, False, "contract_fault", type(error).__name__, meter.used)
        return Receipt(tx_id, True, "ok", "", meter.used, tuple(ctx.events), result)

    def _admit(
        self,
        run: BlockRun,
        tx: Transaction | DecodeError,
        *,
        signature_checked: bool = False,
        check_nonce: bool = True,
    ) -> Transaction:
        """Checks every transaction passes before it may run, in a fixed order."""
        return self._admit_sender(
            run, tx, signature_checked=signature_checked, check_nonce=check_nonce
        )[0]

    def _admit_sender(
        self,
        run: BlockRun,
        tx: Transaction | DecodeError,
        *,
        signature_checked: bool = False,
        check_nonce: bool = True,
    ) -> tuple[Transaction, dict[str, Any], bytes]:
        """`_admit`, with the sender's account record as it read it (a fresh copy the caller
        may update) and the record's state key."""
        if isinstance(tx, DecodeError):
            raise ContractError("malformed_transaction", tx.message)
        body = tx.body
        if body.chain_id != self.chain_id:
            raise ContractError("wrong_chain", f"transaction is for chain {body.chain_id!r}")
        height = run.height
        if body.expiry_height < height:
            raise ContractError("expired", f"expired at height {body.expiry_height}")
        if body.expiry_height > height + EXPIRY_BLOCKS_MAX:
            raise ContractError(
                "expiry_too_far",
                f"expiry height {body.expiry_height} is more than {EXPIRY_BLOCKS_MAX} blocks "
                f"after height {height}",
            )
        if not signature_checked and not verify(
            self.suite, body.public_key, body, tx.signature, self.domain
        ):
            raise ContractError("bad_signature", "the signature does not verify")
        key = _account_state_key(body.sender)
        raw = run.read(key)
        if raw is None:
            raise ContractError("unknown_account", f"no account {body.sender!r}")
        account = decode_stored(raw)
        assert isinstance(account, dict), "accounts are maps"
        status = account.get("status")
        if status == identity_state.CANCELLED:
            raise ContractError("account_cancelled", f"account {body.sender!r} is cancelled")
        if status == identity_state.FROZEN and frozen_now(account, height):
            raise ContractError("account_frozen", f"account {body.sender!r} is frozen")
        if account.get("public_key") != body.public_key.hex():
            raise ContractError("wrong_key", "the key is not the account's current key")
        if check_nonce and body.nonce != account.get("nonce", 0):
            raise ContractError(
                "bad_nonce", f"expected nonce {account.get('nonce', 0)}, got {body.nonce}"
            )
        self._admit_contract(run, tx)
        return tx, account, key

    def _admit_contract(self, run: BlockRun, tx: Transaction) -> None:
        body = tx.body
        # unknown_contract, contract_retired or contract_frozen (the block's cached lookup,
        # the one a call into the contract meets)
        active = run.active_version(body.contract)
        if body.contract_version != active:
            raise ContractError(
                "wrong_contract_version",
                f"{body.contract} runs version {active}, "
                f"the transaction expects {body.contract_version}",
            )


def _account_state_key(account_id: str) -> bytes:
    """Where identity keeps `account_id`'s record (identity_state spells the key)."""
    return state_key(identity_state.CONTRACT, identity_state.account_key(account_id))


def _unknown(tx_bytes: bytes) -> tuple[bytes, Transaction] | None:
    return None


class _AtHeight(Mapping[bytes, bytes]):
    """Committed state as it was at a past height (read-only, for signed reads)."""

    def __init__(self, state: CommittedState, height: int) -> None:
        self._state = state
        self._height = height

    def __getitem__(self, key: bytes) -> bytes:
        value = self._state.get(key, self._height)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self._state.get(key, self._height)
        return default if value is None else value

    def __iter__(self) -> Iterator[bytes]:
        raise TypeError("past state cannot be listed")

    def __len__(self) -> int:
        raise TypeError("past state cannot be counted")
