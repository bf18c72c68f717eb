"""`canonical`'s value check: what contract state, events and results may hold. Its fast
path for the common containers must accept and refuse exactly what the plain rule does."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.execution.values import VALUE_DEPTH_MAX, ContractError, canonical


class Level(enum.IntEnum):
    LOW = 1


def reference(value: Any, depth: int = 0) -> str | None:
    """The rule, written plainly: the refusal code, or None when the value may be stored."""
    if depth > VALUE_DEPTH_MAX:
        return "value_too_deep"
    if value is None or isinstance(value, bool | int | str | bytes):
        return None
    if isinstance(value, list | tuple):
        for item in value:
            if (code := reference(item, depth + 1)) is not None:
                return code
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return "bad_value"
            if (code := reference(item, depth + 1)) is not None:
                return code
        return None
    return "bad_value"


def outcome(value: Any) -> str | None:
    try:
        canonical(value)
    except ContractError as error:
        return error.code
    return None


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.floats(allow_nan=False),
    st.just(Level.LOW),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=values)
def test_the_check_refuses_exactly_what_the_rule_refuses(value: Any) -> None:
    assert outcome(value) == reference(value)


@pytest.mark.parametrize("levels", [VALUE_DEPTH_MAX - 1, VALUE_DEPTH_MAX, VALUE_DEPTH_MAX + 1])
@pytest.mark.parametrize("leaf", [1, "x", None, [], {}])
def test_depth_limit_holds_for_scalars_and_containers_alike(levels: int, leaf: Any) -> None:
    value: Any = leaf
    for index in range(levels):
        value = [value] if index % 2 else {"k": value}
    assert outcome(value) == reference(value)
    assert (outcome(value) is None) == (levels <= VALUE_DEPTH_MAX)
