"""The contracts' one hex parser (`consortia.execution.contract.arg_hex` and `is_hex`): its
fixed-length mode (keys, node ids, digests) and its bounded mode (sealed bytes, salts, wrapped
keys), each refusing with the contracts' `bad_argument`."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.execution.contract import ContractError, arg_hex, is_hex


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", True),
        ("00", True),
        ("0a1b", True),
        ("abc", False),  # half a byte
        ("0A", False),  # upper case
        ("0g", False),
        ("١٢", False),  # digits, but not ASCII hex digits
        (b"00", False),
        (None, False),
        (12, False),
    ],
)
def test_is_hex_is_lowercase_hex_of_whole_bytes(value: Any, expected: bool) -> None:
    assert is_hex(value) is expected


def test_is_hex_with_a_bound() -> None:
    assert is_hex("00" * 4, length_max=8)
    assert not is_hex("00" * 5, length_max=8)


@pytest.mark.parametrize("value", ["00", "ab" * 8])
def test_arg_hex_bounded_accepts(value: str) -> None:
    assert arg_hex({"salt": value}, "salt", length_max=16) == value


@pytest.mark.parametrize("value", ["", "0", "abc", "AB", "ab" * 9, None, 7, ["ab"]])
def test_arg_hex_bounded_refuses(value: Any) -> None:
    with pytest.raises(ContractError) as raised:
        arg_hex({"salt": value}, "salt", length_max=16)
    assert raised.value.code == "bad_argument"
    assert "at most 16 digits" in str(raised.value)


def test_arg_hex_fixed_lengths() -> None:
    assert arg_hex({"key": "ab" * 32}, "key", (64, 130)) == "ab" * 32
    for value in ("ab" * 31, "AB" * 32, "ab" * 33, None):
        with pytest.raises(ContractError) as raised:
            arg_hex({"key": value}, "key", (64, 130))
        assert raised.value.code == "bad_argument"


def test_arg_hex_takes_one_mode() -> None:
    with pytest.raises(AssertionError):
        arg_hex({"key": "ab"}, "key", (2,), length_max=2)
    with pytest.raises(AssertionError):
        arg_hex({"key": "ab"}, "key")
