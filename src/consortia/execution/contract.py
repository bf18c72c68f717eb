"""The narrow, deterministic API a built-in contract is written against.

A contract is a class with a `name`, a `version` and methods marked with `@method`. Each call
gets a `Context`: reads and writes in the contract's own namespace, events, the caller's
account id, the block's height and agreed time, and calls into other contracts. Nothing else
is reachable: contract modules may import only from an allow-list (checked by a test), and
the context is the only door to state.

Every read, write, event and byte costs gas, deterministically; a call that exceeds its limit
fails with `out_of_gas`. A failed call (`ctx.fail`, `ContractError`, out of gas) changes
nothing: its writes live in an overlay the engine discards.

Values stored and emitted are canonical MessagePack values: integers, strings, booleans,
None, lists and string-keyed maps of those. No floats (money is integers in minor units).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import msgspec

from consortia.types.encoding import encode

if TYPE_CHECKING:
    from consortia.execution.engine import BlockRun
    from consortia.types.genesis import Genesis

# Gas schedule: what each operation costs. Changing it changes results: it is part of the
# protocol version.
GAS_READ = 20
GAS_WRITE = 100
GAS_EVENT = 50
GAS_PER_BYTE_READ = 1
GAS_PER_BYTE_WRITE = 5
GAS_CALL = 200
GAS_TX_BASE = 1_000
TX_GAS_LIMIT = 2_000_000
EVENTS_PER_TX_MAX = 256
CALL_DEPTH_MAX = 4
KEY_LENGTH_MAX = 256
VALUE_BYTES_MAX = 64 * 1024

Value = Any  # a canonical MessagePack value; checked by `_canonical` when written


class ContractError(Exception):
    """A call failed for a reason the caller can act on; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OutOfGasError(ContractError):
    def __init__(self, limit: int) -> None:
        super().__init__("out_of_gas", f"the call used more than its gas limit of {limit}")


Handler = Callable[["Contract", "Context", dict[str, Any]], Any]
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


@dataclass(slots=True)
class Meter:
    limit: int
    used: int = 0

    def charge(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise OutOfGasError(self.limit)


@dataclass(slots=True)
class Event:
    contract: str
    name: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Context:
    """What a contract sees of the world during one call."""

    run: BlockRun
    contract: str
    # Who called: an account id, or "contract:<name>" for a call from another contract.
    caller: str
    # The account that signed the transaction this call is part of.
    origin: str
    height: int
    time_ms: int
    meter: Meter
    depth: int = 0
    events: list[Event] = field(default_factory=list)

    # State, in this contract's namespace.

    def get(self, key: str, default: Value = None) -> Value:
        raw = self._read(self.contract, key)
        return default if raw is None else msgspec.msgpack.decode(raw)

    def put(self, key: str, value: Value) -> None:
        self._write(self.contract, key, _canonical(value))

    def delete(self, key: str) -> None:
        self._write(self.contract, key, None)

    def has(self, key: str) -> bool:
        return self._read(self.contract, key) is not None

    def read_other(self, contract: str, key: str, default: Value = None) -> Value:
        """Read another contract's state (state is public within the ledger; writes are not)."""
        raw = self._read(contract, key)
        return default if raw is None else msgspec.msgpack.decode(raw)

    # Events and failure.

    def emit(self, name: str, **fields: Value) -> None:
        encoded = _canonical(fields)
        self.meter.charge(GAS_EVENT + len(encoded))
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
        self.meter.charge(GAS_CALL)
        return self.run.call_contract(self, contract, method_name, dict(args))

    def _read(self, contract: str, key: str) -> bytes | None:
        full = _key(contract, key)
        raw = self.run.read(full)
        self.meter.charge(GAS_READ + GAS_PER_BYTE_READ * (len(full) + len(raw or b"")))
        return raw

    def _write(self, contract: str, key: str, value: bytes | None) -> None:
        full = _key(contract, key)
        if value is not None and len(value) > VALUE_BYTES_MAX:
            self.fail("value_too_large", f"a stored value is at most {VALUE_BYTES_MAX} bytes")
        self.meter.charge(GAS_WRITE + GAS_PER_BYTE_WRITE * (len(full) + len(value or b"")))
        self.run.write(full, value)


def _key(contract: str, key: str) -> bytes:
    full = f"{contract}/{key}".encode()
    if len(full) > KEY_LENGTH_MAX:
        raise ContractError("key_too_long", f"state keys are at most {KEY_LENGTH_MAX} bytes")
    return full


def _canonical(value: Value) -> bytes:
    """Encode a value, refusing floats and other non-deterministic types."""
    _check_value(value, 0)
    return encode(value)


def _check_value(value: Value, depth: int) -> None:
    if depth > 16:
        raise ContractError("value_too_deep", "values nest at most 16 deep")
    if value is None or isinstance(value, bool | int | str | bytes):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ContractError("bad_value", "map keys must be strings")
            _check_value(item, depth + 1)
        return
    raise ContractError("bad_value", f"values of type {type(value).__name__} cannot be stored")


def frozen_now(record: Mapping[str, Any], height: int) -> bool:
    """Whether a record (an account or a deployment) is frozen at `height`.

    An emergency freeze names the last height it holds (`frozen_until`); after it, it no
    longer applies. The engine's admission and every contract use this one rule.
    """
    if record.get("status") != "frozen":
        return False
    until = record.get("frozen_until")
    return not (isinstance(until, int) and height > until)


# Argument helpers: a malformed argument is the caller's mistake, with a stable code.


def arg_int(args: Mapping[str, Any], name: str, *, minimum: int | None = None) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContractError("bad_argument", f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise ContractError("bad_argument", f"{name} must be at least {minimum}")
    return value


def arg_str(args: Mapping[str, Any], name: str, *, max_length: int = 256) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ContractError("bad_argument", f"{name} must be a non-empty string")
    return value


def arg_list(args: Mapping[str, Any], name: str, *, max_length: int = 256) -> list[Any]:
    value = args.get(name)
    if not isinstance(value, list) or len(value) > max_length:
        raise ContractError("bad_argument", f"{name} must be a list of at most {max_length}")
    return value
