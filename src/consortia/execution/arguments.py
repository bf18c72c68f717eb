"""The argument parsers every contract shares: a malformed argument is the caller's mistake,
refused with the stable code `bad_argument` (and nothing changed).

Owns the checks of integers, strings, lists, hex, account ids and currency codes as
contracts take them from a transaction's arguments. Contract modules import these from
`consortia.execution.contract` (the allow-listed contract API re-exports them). Must never
read state, a clock or randomness: a check depends on its argument alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from consortia.execution.values import ContractError
from consortia.types.primitives import ACCOUNT_ID_PATTERN, CURRENCY_PATTERN

HEX_DIGITS: Final = frozenset("0123456789abcdef")
# The characters of the ids contracts create (accounts, receivables): letters, digits, _ . : -
ID_CHARACTERS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
)
PUBLIC_KEY_HEX_LENGTHS: Final = (64, 130)  # Ed25519 (32 bytes), SM2 uncompressed (65 bytes)
HASH_HEX_LENGTH: Final = 64  # SHA-256 and SM3 alike: digests and node ids


def arg_int(
    args: Mapping[str, Any], name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContractError("bad_argument", f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise ContractError("bad_argument", f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ContractError("bad_argument", f"{name} is at most {maximum}")
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


_CURRENCY: Final = re.compile(CURRENCY_PATTERN)
_ACCOUNT_ID: Final = re.compile(ACCOUNT_ID_PATTERN)


def is_account_id(value: object) -> TypeGuard[str]:
    """Whether `value` is an account id a transaction can carry as its sender (1 to 64
    letters, digits, _ . -; types.primitives.ACCOUNT_ID_PATTERN): no colon, so never a
    contract's "contract:<name>"."""
    return isinstance(value, str) and _ACCOUNT_ID.match(value) is not None


def is_currency(value: object) -> TypeGuard[str]:
    """Whether `value` is a currency code as the genesis document spells one (three capital
    letters, types.primitives.CURRENCY_PATTERN)."""
    return isinstance(value, str) and _CURRENCY.match(value) is not None


def is_hex(value: object, *, length_max: int | None = None) -> TypeGuard[str]:
    """Whether `value` is lowercase hex of whole bytes (an even number of digits; the empty
    string is no bytes), of at most `length_max` digits when given. The one hex check of the
    contracts and of the suite checks below."""
    return (
        isinstance(value, str)
        and len(value) % 2 == 0
        and (length_max is None or len(value) <= length_max)
        and set(value) <= HEX_DIGITS
    )


def arg_hex(
    args: Mapping[str, Any],
    name: str,
    lengths: tuple[int, ...] = (),
    *,
    length_max: int | None = None,
) -> str:
    """Lowercase hex (keys, node ids, digests and sealed bytes travel so): of one of `lengths`
    digits, or, given `length_max` instead, of 1 to `length_max` digits of whole bytes."""
    assert bool(lengths) != (length_max is not None), "lengths or length_max, not both"
    value = args.get(name)
    if length_max is not None:
        if is_hex(value, length_max=length_max) and value:
            return value
        raise ContractError(
            "bad_argument", f"{name} is lowercase hex of at most {length_max} digits"
        )
    if is_hex(value) and len(value) in lengths:
        return value
    digits = " or ".join(str(n) for n in lengths)
    raise ContractError("bad_argument", f"{name} must be lowercase hex of {digits} digits")
