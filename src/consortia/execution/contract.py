"""The narrow, deterministic API a built-in contract is written against: the contract sandbox.

Owns: the `Contract` base class and `@method`; the `Context` a call gets (reads and writes in
the contract's own namespace, reads of other contracts' state, events, the caller and origin,
the block's height and agreed time, calls into other contracts, the chain's crypto suite as
far as a contract may use it (deterministic checks, hashes, signature checks) and the chain's
identity (its id and genesis hash); the `Host` protocol, the only thing a `Context` asks of
the engine; the gas schedule and the per-call limits; the argument parsers every contract
shares (written in `arguments.py`, offered here); `frozen_now`, the one rule for whether a
freeze holds; `SealedView`, what a contract may see of a sealed (encrypted) record.

Must never: import the engine, the state tree or the registry (the engine imports this
module, never the other way round), or hand a contract anything that reaches them. A
`Context` holds only a `Host`, and every read, write and call goes through it with its gas
charged here. Contract modules may import only from an allow-list (this module among them;
checked by tests/unit/test_contract_imports.py), so the context is the only door to state.

Every read, write, event and byte costs gas, deterministically; a call that exceeds its limit
fails with `out_of_gas`. A failed call (`ctx.fail`, `ContractError`, out of gas) changes
nothing: its writes live in an overlay the engine discards.

Values stored and emitted are canonical values (consortia.execution.values): integers,
strings, booleans, None, lists and string-keyed maps of those. No floats (money is integers in
minor units).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn, Protocol, TypeVar

import msgspec

from consortia.execution.arguments import (
    HASH_HEX_LENGTH,
    HEX_DIGITS,
    ID_CHARACTERS,
    PUBLIC_KEY_HEX_LENGTHS,
    arg_hex,
    arg_int,
    arg_list,
    arg_str,
    is_account_id,
    is_currency,
    is_hex,
)
from consortia.execution.values import (
    KEY_LENGTH_MAX,
    VALUE_BYTES_MAX,
    ContractError,
    Value,
    canonical,
    decode_stored,
)
from consortia.types.genesis import Genesis
from consortia.types.primitives import (
    ACCOUNT_ID_LENGTH_MAX,
    CURRENCY_DEFAULT,
    PAYLOAD_ITEM_SIZE_MAX,
    VALIDATORS_MAX,
)

# The contract API: everything a contract module may use (ContractError and Value come from
# consortia.execution.values; contract modules import them from here, the allow-listed module).
__all__ = [
    "ACCOUNT_ID_LENGTH_MAX",
    "CALL_DEPTH_MAX",
    "CONTRACT_CALLER_PREFIX",
    "CURRENCY_DEFAULT",
    "EVENTS_PER_TX_MAX",
    "GAS_CALL",
    "GAS_CRYPTO",
    "GAS_EVENT",
    "GAS_PER_BYTE_READ",
    "GAS_PER_BYTE_WRITE",
    "GAS_READ",
    "GAS_TX_BASE",
    "GAS_WRITE",
    "HASH_HEX_LENGTH",
    "HEX_DIGITS",
    "ID_CHARACTERS",
    "PAYLOAD_ITEM_SIZE_MAX",
    "PUBLIC_KEY_HEX_LENGTHS",
    "TX_GAS_LIMIT",
    "VALIDATORS_MAX",
    "Context",
    "Contract",
    "ContractError",
    "Event",
    "Host",
    "Meter",
    "OutOfGasError",
    "SealedView",
    "StateReader",
    "Value",
    "arg_hex",
    "arg_int",
    "arg_list",
    "arg_str",
    "contract_caller",
    "frozen_now",
    "is_account_id",
    "is_currency",
    "is_hex",
    "method",
    "read_record",
]

# Gas schedule: what each operation costs. Changing it changes results: it is part of the
# protocol version.
GAS_READ = 20
GAS_WRITE = 100
GAS_EVENT = 50
GAS_PER_BYTE_READ = 1
GAS_PER_BYTE_WRITE = 5
GAS_CALL = 200
GAS_TX_BASE = 1_000
# A deterministic check with the chain's suite (a key's form, a sealed record's structure, an
# opening against its commitment, a signature, a hash), plus GAS_PER_BYTE_READ for each byte
# it looks at.
GAS_CRYPTO = 500
TX_GAS_LIMIT = 2_000_000
EVENTS_PER_TX_MAX = 256
CALL_DEPTH_MAX = 4

# A caller named "contract:<name>" is a contract; no account may carry such an id.
CONTRACT_CALLER_PREFIX: Final = "contract:"


def contract_caller(contract: str) -> str:
    """How `contract` appears as `ctx.caller` to the contracts it calls."""
    return f"{CONTRACT_CALLER_PREFIX}{contract}"


class OutOfGasError(ContractError):
    def __init__(self, limit: int) -> None:
        super().__init__("out_of_gas", f"the call used more than its gas limit of {limit}")


class StateReader(Protocol):
    """Reads state: (contract, key) -> value, or None when absent.

    `Engine.query` (committed state) and `Context.read_other` (inside a call, metered) are
    both readers; the state accessors each contract exports take one."""

    def __call__(self, contract: str, key: str, /) -> Any: ...


def read_record(read: StateReader, contract: str, key: str) -> dict[str, Any] | None:
    """A stored record (a map), or None when nothing is stored at `key`."""
    record = read(contract, key)
    assert record is None or isinstance(record, dict), f"{contract}/{key} holds a map"
    return record


@dataclass(frozen=True, slots=True)
class SealedView:
    """What a contract may see of a sealed record (`consortia.privacy.envelope.Sealed`), as the
    host decoded it from its hex encoding: never the plaintext, never a key.

    `readers` lists (party, key version) of each wrapped data key, in the record's order."""

    suite: str
    label: str
    commitment: str  # lowercase hex
    readers: tuple[tuple[str, int], ...]
    size: int  # bytes of the encoded record


class Host(Protocol):
    """What a running call may ask of the engine, and all of it: a `Context` holds nothing else.

    Keys are full state keys (`values.state_key`); gas is charged by the `Context` before it
    asks. The engine implements this for the block being executed."""

    def read(self, key: bytes) -> bytes | None:
        """The value at `key` as this call sees it (pending writes included), or None."""
        ...

    def write(self, key: bytes, value: bytes | None) -> None:
        """Write (None deletes) into the current call's overlay."""
        ...

    def call(self, ctx: Context, method_name: str, args: dict[str, Any]) -> Any:
        """Run `method_name` of the contract `ctx` names, in an overlay of its own: if it
        raises, its writes and events are gone and the error propagates."""
        ...

    def has_code(self, contract: str, version: int) -> bool:
        """Whether this build ships code for `contract` at `version`."""
        ...

    def migrate(self, ctx: Context, version: int, from_version: int) -> None:
        """Run `Contract.migrate` of `ctx.contract`'s code at `version`; its writes join the
        calling overlay. Only `sys` may ask."""
        ...

    # The chain's crypto suite, deterministic checks only: no keys, no randomness.

    def suite_name(self) -> str:
        """The chain's suite ("intl" or "gm"), fixed at genesis."""
        ...

    def valid_encryption_public_key(self, public_key: bytes) -> bool:
        """Whether `public_key` is an encryption public key of the chain's suite."""
        ...

    def wrapped_key_size(self) -> int:
        """The size in bytes of a data key wrapped to an encryption key of the suite."""
        ...

    def decode_sealed(self, encoded: str) -> SealedView | None:
        """The sealed record `encoded` (hex of `encode_sealed`), or None when malformed."""
        ...

    def opening_matches(self, label: str, commitment: bytes, salt: bytes, value: bytes) -> bool:
        """Whether `value` with `salt` opens `commitment` under `label`."""
        ...

    def signature_valid(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Whether `signature` of `message` verifies under `public_key` (False if malformed)."""
        ...

    def hash(self, data: bytes) -> bytes:
        """The suite's 32-byte hash of `data`."""
        ...

    # The chain's identity, fixed at genesis.

    def chain_id(self) -> str: ...

    def genesis_hash(self) -> bytes: ...


H = TypeVar("H", bound=Callable[..., Any])


def method(name: str) -> Callable[[H], H]:
    """Mark a contract method callable by transactions as `name`."""

    def mark(function: H) -> H:
        function.__consortia_method__ = name  # type: ignore[attr-defined]
        return function

    return mark


class Contract:
    """Base of every built-in contract. Subclasses set `name` and `version`."""

    name: ClassVar[str]
    version: ClassVar[int]
    methods: ClassVar[dict[str, str]]  # method name -> Python attribute

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.methods = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                exposed = getattr(value, "__consortia_method__", None)
                if exposed is not None:
                    cls.methods[exposed] = attribute

    def call(self, ctx: Context, method_name: str, args: dict[str, Any]) -> Any:
        attribute = self.methods.get(method_name)
        if attribute is None:
            raise ContractError("unknown_method", f"{self.name} has no method {method_name!r}")
        return getattr(self, attribute)(ctx, args)

    def migrate(self, ctx: Context, from_version: int) -> None:
        """Move this contract's state from `from_version`; the default keeps it as it is."""
        del ctx, from_version

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Value]:
        """This contract's initial state (key -> value in its namespace) for a new chain."""
        del genesis
        return {}


# Meter, Event and Context are msgspec structs rather than dataclasses: every transaction
# builds a meter and two contexts and most emit an event, and a struct is built in C, in a
# third of the time.


class Meter(msgspec.Struct):
    limit: int
    used: int = 0

    def charge(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise OutOfGasError(self.limit)


class Event(msgspec.Struct):
    contract: str
    name: str
    fields: dict[str, Any]


class Context(msgspec.Struct):
    """What a contract sees of the world during one call."""

    host: Host
    contract: str
    # Who called: an account id, or "contract:<name>" for a call from another contract.
    caller: str
    # The account that signed the transaction this call is part of.
    origin: str
    height: int
    time_ms: int
    meter: Meter
    depth: int = 0
    events: list[Event] = msgspec.field(default_factory=list)

    # State, in this contract's namespace.

    def get(self, key: str, default: Value = None) -> Value:
        raw = self._read(self.contract, key)
        return default if raw is None else decode_stored(raw)

    def put(self, key: str, value: Value) -> None:
        self._write(self.contract, key, canonical(value))

    def delete(self, key: str) -> None:
        self._write(self.contract, key, None)

    def has(self, key: str) -> bool:
        return self._read(self.contract, key) is not None

    def read_other(self, contract: str, key: str, default: Value = None) -> Value:
        """Read another contract's state (state is public within the ledger; writes are not)."""
        raw = self._read(contract, key)
        return default if raw is None else decode_stored(raw)

    def has_other(self, contract: str, key: str) -> bool:
        """Whether another contract's state holds `key`: a read, charged as one, whose
        value is not decoded."""
        return self._read(contract, key) is not None

    # Events and failure.

    def emit(self, name: str, **fields: Value) -> None:
        encoded = canonical(fields)
        meter = self.meter
        meter.used += GAS_EVENT + len(encoded)  # `Meter.charge`, written out
        if meter.used > meter.limit:
            raise OutOfGasError(meter.limit)
        if len(self.events) >= EVENTS_PER_TX_MAX:
            self.fail("too_many_events", f"a transaction emits at most {EVENTS_PER_TX_MAX} events")
        self.events.append(Event(self.contract, name, fields))

    def fail(self, code: str, message: str) -> NoReturn:
        raise ContractError(code, message)

    def require(self, condition: bool, code: str, message: str) -> None:
        if not condition:
            raise ContractError(code, message)

    # Calls into other contracts, as this contract ("contract:<name>").

    def invoke(self, contract: str, method_name: str, args: Mapping[str, Value]) -> Value:
        if self.depth >= CALL_DEPTH_MAX:
            self.fail("call_too_deep", f"contract calls nest at most {CALL_DEPTH_MAX} deep")
        meter = self.meter
        meter.used += GAS_CALL  # `Meter.charge`, written out
        if meter.used > meter.limit:
            raise OutOfGasError(meter.limit)
        return self.host.call(self._nested(contract), method_name, dict(args))

    # The chain's crypto suite: deterministic checks, each charged before it runs.

    @property
    def suite(self) -> str:
        """The chain's crypto suite ("intl" or "gm")."""
        return self.host.suite_name()

    def valid_encryption_key(self, public_key_hex: str) -> bool:
        """Whether `public_key_hex` (lowercase hex) is an encryption public key of the suite."""
        self.meter.charge(GAS_CRYPTO + GAS_PER_BYTE_READ * len(public_key_hex))
        if not is_hex(public_key_hex):
            return False
        return self.host.valid_encryption_public_key(bytes.fromhex(public_key_hex))

    @property
    def wrapped_key_size(self) -> int:
        """The size in bytes of a data key wrapped under the chain's suite (92 intl, 145 gm)."""
        return self.host.wrapped_key_size()

    def sealed_record(self, encoded: str) -> SealedView | None:
        """The sealed record `encoded` (hex) as a contract may see it, or None if malformed."""
        self.meter.charge(GAS_CRYPTO + GAS_PER_BYTE_READ * len(encoded))
        return self.host.decode_sealed(encoded)

    def opening_matches(self, label: str, commitment: str, salt: str, value: str) -> bool:
        """Whether `value` with `salt` (both hex) opens the hex `commitment` under `label`."""
        size = len(commitment) + len(salt) + len(value)
        self.meter.charge(GAS_CRYPTO + GAS_PER_BYTE_READ * size)
        parts = (commitment, salt, value)
        if not all(is_hex(part) for part in parts):
            return False
        return self.host.opening_matches(
            label, bytes.fromhex(commitment), bytes.fromhex(salt), bytes.fromhex(value)
        )

    def signature_valid(self, public_key_hex: str, message: bytes, signature_hex: str) -> bool:
        """Whether `signature_hex` is a signature of `message` under `public_key_hex` (both
        lowercase hex) with the chain's suite; False for anything malformed."""
        size = len(public_key_hex) + len(message) + len(signature_hex)
        self.meter.charge(GAS_CRYPTO + GAS_PER_BYTE_READ * size)
        parts = (public_key_hex, signature_hex)
        if not all(part and is_hex(part) for part in parts):
            return False
        return self.host.signature_valid(
            bytes.fromhex(public_key_hex), message, bytes.fromhex(signature_hex)
        )

    def hash(self, data: bytes) -> str:
        """The chain's suite hash of `data`, as lowercase hex."""
        self.meter.charge(GAS_CRYPTO + GAS_PER_BYTE_READ * len(data))
        return self.host.hash(data).hex()

    @property
    def chain_id(self) -> str:
        """The chain's id (transactions and signed requests name it)."""
        return self.host.chain_id()

    @property
    def genesis_hash(self) -> bytes:
        """The hash of the chain's genesis, which every signature of the chain commits to."""
        return self.host.genesis_hash()

    # Code and deployment (what `sys` needs).

    def has_code(self, contract: str, version: int) -> bool:
        """Whether this build ships code for `contract` at `version`."""
        return self.host.has_code(contract, version)

    def migrate(self, contract: str, version: int, from_version: int) -> None:
        """Run `contract`'s code at `version` `migrate(from_version)` in that contract's
        namespace, as this contract; its writes join this call's (only `sys` may)."""
        self.require(self.depth < CALL_DEPTH_MAX, "call_too_deep", "the upgrade nests too deep")
        self.host.migrate(self._nested(contract), version, from_version)

    def _nested(self, contract: str) -> Context:
        """The context of a call from this one into `contract`: same transaction, same meter
        and events, one level deeper. Every nested context is built here."""
        # Positional, in the fields' order (host, contract, caller, origin, height, time_ms,
        # meter, depth, events): every call from a contract builds one.
        return Context(
            self.host,
            contract,
            contract_caller(self.contract),
            self.origin,
            self.height,
            self.time_ms,
            self.meter,
            self.depth + 1,
            self.events,
        )

    def _read(self, contract: str, key: str) -> bytes | None:
        # The hot path of every call: `state_key`, the key's bound and `Meter.charge` written
        # out in place (tests/unit/test_execution_hot_path.py holds the key to `state_key`).
        full = f"{contract}/{key}".encode()
        size = len(full)
        if size > KEY_LENGTH_MAX:
            raise ContractError("key_too_long", f"state keys are at most {KEY_LENGTH_MAX} bytes")
        raw = self.host.read(full)
        if raw is not None:
            size += len(raw)
        meter = self.meter
        meter.used += GAS_READ + GAS_PER_BYTE_READ * size
        if meter.used > meter.limit:
            raise OutOfGasError(meter.limit)
        return raw

    def _write(self, contract: str, key: str, value: bytes | None) -> None:
        full = f"{contract}/{key}".encode()  # `state_key`, written out as in `_read`
        size = len(full)
        if size > KEY_LENGTH_MAX:
            raise ContractError("key_too_long", f"state keys are at most {KEY_LENGTH_MAX} bytes")
        if value is not None:
            if len(value) > VALUE_BYTES_MAX:
                self.fail("value_too_large", f"a stored value is at most {VALUE_BYTES_MAX} bytes")
            size += len(value)
        meter = self.meter
        meter.used += GAS_WRITE + GAS_PER_BYTE_WRITE * size
        if meter.used > meter.limit:
            raise OutOfGasError(meter.limit)
        self.host.write(full, value)


def frozen_now(record: Mapping[str, Any], height: int) -> bool:
    """Whether a record (an account or a deployment) is frozen at `height`.

    An emergency freeze names the last height it holds (`frozen_until`); after it, it no
    longer applies. The engine's admission and every contract use this one rule.
    """
    if record.get("status") != "frozen":
        return False
    until = record.get("frozen_until")
    return not (isinstance(until, int) and height > until)
