"""Canonical values and state keys: what contract state, events and results may hold.

Owns: the `Value` type and its rules (integers, strings, booleans, None, bytes, lists and
string-keyed maps, nested at most `VALUE_DEPTH_MAX` deep), the one encoding of a value
(`canonical`, canonical MessagePack; `recanonical` re-encodes a value decoded from stored
bytes, which passed `canonical` when stored; `decode_value`/`decode_stored` read one back),
the one form of a state key (`state_key`: "<contract>/<key>"), the size limits on stored
keys and values, and `ContractError`, the failure with a stable code that every check on a
contract call raises.

Must never: accept floats or any other type whose encoding is not the same on every machine;
import the engine, the state tree or anything that does I/O. Pure functions only: the engine,
the contract API and genesis all encode through here, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from consortia.types.encoding import encode

# The one form of a state key lives with the proofs (clients check them); re-exported here.
from consortia.types.state_proof import state_key as state_key  # noqa: PLC0414

KEY_LENGTH_MAX: Final = 256  # bytes of "<contract>/<key>"
VALUE_BYTES_MAX: Final = 64 * 1024  # bytes of one stored value, encoded
VALUE_DEPTH_MAX: Final = 16  # lists and maps nest at most this deep

Value = Any  # a canonical MessagePack value; `canonical` checks it


class ContractError(Exception):
    """A call failed for a reason the caller can act on; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def canonical(value: Value) -> bytes:
    """Encode a value, refusing floats and other non-deterministic types (`bad_value`)."""
    if type(value) not in _SCALARS:  # a scalar needs no check (`_check`'s first test)
        _check(value, 0)
    return encode(value)


# Encode a value decoded from stored canonical bytes (and perhaps given new scalars of the
# allowed types) without checking it again: what was stored passed `canonical`. The encoder
# itself, not a wrapper: every transaction re-encodes its sender's account through it.
recanonical: Final = encode


# The value stored as some bytes: `decode_value` without its None case, for the hot paths
# that test for None themselves (one function call fewer per read).
decode_stored: Final = msgspec.msgpack.decode


def decode_value(raw: bytes | None, default: Value = None) -> Value:
    """The value stored as `raw`, or `default` when nothing is stored."""
    return default if raw is None else decode_stored(raw)


# Exact types a value may be without looking further (subclasses take the general path).
_SCALARS: Final = frozenset({type(None), bool, int, str, bytes})


def _check(value: Value, depth: int) -> None:
    if depth > VALUE_DEPTH_MAX:
        raise ContractError("value_too_deep", f"values nest at most {VALUE_DEPTH_MAX} deep")
    kind = type(value)
    if kind in _SCALARS:
        return
    # The common containers, their scalar items checked in place (the hot path of every
    # write); a scalar one level deeper is only refused when that level is too deep.
    scalar_items_ok = depth < VALUE_DEPTH_MAX
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise ContractError("bad_value", "map keys must be strings")
            if not (scalar_items_ok and type(item) in _SCALARS):
                _check(item, depth + 1)
    elif kind is list or kind is tuple:
        for item in value:
            if not (scalar_items_ok and type(item) in _SCALARS):
                _check(item, depth + 1)
    else:
        _check_subclass(value, depth)


def _check_subclass(value: Value, depth: int) -> None:
    """The same rule for subclasses of the allowed types (an IntEnum, say)."""
    if isinstance(value, bool | int | str | bytes):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ContractError("bad_value", "map keys must be strings")
            _check(item, depth + 1)
        return
    raise ContractError("bad_value", f"values of type {type(value).__name__} cannot be stored")
