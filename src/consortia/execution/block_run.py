"""One block being executed: `BlockRun`, the `Host` every contract call of the block goes
through (see execution/contract.py for the protocol).

Owns the block's writes over committed state and the journal that lets a failed call discard
exactly its own writes, the lookup of a contract's deployment and code for a call, and the
suite checks a contract may ask for. Must never hold a reference to the engine, the state
tree or the registry (it reads committed state through a read-only mapping and code through
a read-only map), nor read a clock, randomness, the network or the disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consortia.execution.contract import Context, Contract, ContractError, SealedView
from consortia.execution.contracts import system
from consortia.execution.registry import Code, code_for
from consortia.execution.suite_checks import SuiteChecks
from consortia.execution.values import decode_value, state_key

# A cached deployment lookup (see `BlockRun._deployments`).
_Deployment = tuple[int, dict[str, Any] | None, Any, Contract | None]
# A key's previous state in the journal when the block had not written it yet.
_UNWRITTEN: Any = object()


@dataclass(slots=True)
class BlockRun:
    """One block being executed, and the `Host` its contract calls see.

    The block's writes over committed state, with a journal so that a failed call discards
    exactly its own writes: every write inside a call records the key's previous value, and
    discarding a call restores them back to the call's mark (reads are then one lookup, and
    keeping a call copies nothing). It reads committed state through a read-only view and
    finds code in a read-only map: nothing in it reaches the engine, the state tree or the
    registry (its suite checks hold the chain's suite, for deterministic checks only)."""

    committed: Mapping[bytes, bytes]
    code: Code
    height: int
    time_ms: int
    checks: SuiteChecks
    # The block's writes so far (kept calls and the calls still open); None deletes.
    block_writes: dict[bytes, bytes | None] = field(default_factory=dict)
    # (key, previous value or _UNWRITTEN) for every write since the outermost open call.
    _journal: list[tuple[bytes, Any]] = field(default_factory=list)
    # The journal's length when each open call began, outermost first.
    _marks: list[int] = field(default_factory=list)
    # Deployment records looked up, by contract: (`_changes` when it was read, the record,
    # the version a call into the contract runs at this height or the refusal it meets, and
    # that version's code once a call looked it up). An entry holds while `_changes` has not
    # moved since.
    _deployments: dict[str, _Deployment] = field(default_factory=dict)
    # The state keys of the cached deployment records, and how many times a write or a
    # discard has changed one of them (every change of `block_writes` goes through `write`,
    # `write_between_calls` or `discard`, and committed state stays as it is for the block).
    _watched: set[bytes] = field(default_factory=set)
    _changes: int = 0

    # The Host protocol.

    def read(self, key: bytes) -> bytes | None:
        writes = self.block_writes
        if key in writes:
            return writes[key]
        return self.committed.get(key)

    def write(self, key: bytes, value: bytes | None) -> None:
        assert self._marks, "writes happen inside a call"
        self._journal.append((key, self.block_writes.get(key, _UNWRITTEN)))
        self.block_writes[key] = value
        if key in self._watched:
            self._changes += 1

    def call(self, ctx: Context, method_name: str, args: dict[str, Any]) -> Any:
        instance = self._active(ctx.contract)
        marks = self._marks
        marks.append(len(self._journal))  # `begin`, written out: every call passes here
        events_before = len(ctx.events)
        try:
            result = instance.call(ctx, method_name, args)
        except BaseException:
            # A failed call leaves nothing behind: neither its writes nor its events.
            self.discard()
            del ctx.events[events_before:]
            raise
        marks.pop()  # `keep`, written out
        if not marks:
            self._journal.clear()
        return result

    def has_code(self, contract: str, version: int) -> bool:
        return (contract, version) in self.code

    def migrate(self, ctx: Context, version: int, from_version: int) -> None:
        if ctx.caller != system.CALLER:
            raise ContractError("not_authorised", "only sys runs a contract's migrate")
        code_for(self.code, ctx.contract, version).migrate(ctx, from_version)

    def suite_name(self) -> str:
        return self.checks.suite_name()

    def valid_encryption_public_key(self, public_key: bytes) -> bool:
        return self.checks.valid_encryption_public_key(public_key)

    def wrapped_key_size(self) -> int:
        return self.checks.wrapped_key_size()

    def decode_sealed(self, encoded: str) -> SealedView | None:
        return self.checks.decode_sealed(encoded)

    def opening_matches(self, label: str, commitment: bytes, salt: bytes, value: bytes) -> bool:
        return self.checks.opening_matches(label, commitment, salt, value)

    def signature_valid(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return self.checks.signature_valid(public_key, message, signature)

    def hash(self, data: bytes) -> bytes:
        return self.checks.hash(data)

    def chain_id(self) -> str:
        return self.checks.chain_id()

    def genesis_hash(self) -> bytes:
        return self.checks.genesis_hash()

    # The engine's side.

    def query(self, contract: str, key: str) -> Any:
        """A `StateReader` over this block's state as it stands, unmetered (admission)."""
        return decode_value(self.read(state_key(contract, key)))

    def write_between_calls(self, key: bytes, value: bytes | None) -> None:
        """A write of the engine's own while no call is open (a sender's nonce): nothing
        could discard it, so it goes straight into the block's writes, unjournalled."""
        assert not self._marks, "no call is open"
        self.block_writes[key] = value
        if key in self._watched:
            self._changes += 1

    def begin(self) -> None:
        self._marks.append(len(self._journal))

    def keep(self) -> None:
        self._marks.pop()
        if not self._marks:
            self._journal.clear()  # nothing open could discard these writes any more

    def discard(self) -> None:
        mark = self._marks.pop()
        journal, writes = self._journal, self.block_writes
        watched = self._watched
        for key, previous in reversed(journal[mark:]):
            if previous is _UNWRITTEN:
                del writes[key]
            else:
                writes[key] = previous
            if key in watched:
                self._changes += 1
        del journal[mark:]

    @property
    def open_calls(self) -> int:
        return len(self._marks)

    def deployment(self, contract: str) -> dict[str, Any] | None:
        """`contract`'s deployment record as this block stands (unmetered; never mutate it)."""
        cached = self._deployments.get(contract)
        if cached is not None and cached[0] == self._changes:
            return cached[1]
        return self._look_up(contract)[1]

    def _look_up(self, contract: str) -> _Deployment:
        """Decode `contract`'s deployment record afresh and note what a call into it meets
        at this block's height: the version that runs, or the refusal."""
        self._watched.add(state_key(system.CONTRACT, system.deployment_key(contract)))
        record = system.read_deployment(self.query, contract)
        active: Any  # the record's active version, or a ContractError
        if record is None:
            active = ContractError("unknown_contract", f"no contract {contract!r}")
        elif not system.deployment_runs(record, self.height):
            status = record["status"]
            active = ContractError(f"contract_{status}", f"{contract} is {status}")
        else:
            active = record["active_version"]
        entry: _Deployment = (self._changes, record, active, None)
        self._deployments[contract] = entry
        return entry

    def active_version(self, contract: str) -> int:
        """The version of `contract` a call into it runs at this block's height, or the
        refusal it meets (unknown_contract, contract_retired, contract_frozen), raised."""
        cached = self._deployments.get(contract)
        if cached is None or cached[0] != self._changes:
            cached = self._look_up(contract)
        active = cached[2]
        if isinstance(active, ContractError):
            raise ContractError(active.code, active.message)
        return int(active)

    def _active(self, contract: str) -> Contract:
        cached = self._deployments.get(contract)
        if cached is None or cached[0] != self._changes:
            cached = self._look_up(contract)
        changes, record, active, instance = cached
        if isinstance(active, ContractError):
            raise ContractError(active.code, active.message)
        if instance is None:
            instance = code_for(self.code, contract, int(active))  # none: the node must stop
            self._deployments[contract] = (changes, record, active, instance)
        return instance
