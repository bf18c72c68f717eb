"""A full state key and its parts: `types.state_proof.state_key` and its inverse
`split_state_key` (the mirror's rows read a block's writes through it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.mirror.rows import state_change_rows
from consortia.types.state_proof import split_state_key, state_key

CONTRACT_NAMES = st.sampled_from([c.name for c in BUILTIN_CONTRACTS]) | st.text(
    st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), max_size=16
)
KEYS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)


def test_no_contract_name_holds_the_separator() -> None:
    assert all("/" not in contract.name for contract in BUILTIN_CONTRACTS)


@given(CONTRACT_NAMES, KEYS)
def test_split_state_key_inverts_state_key(contract: str, key: str) -> None:
    assert split_state_key(state_key(contract, key)) == (contract, key)


def test_a_key_may_hold_more_separators() -> None:
    assert split_state_key(b"asset/balance/CNY/alice") == ("asset", "balance/CNY/alice")
    assert state_key("asset", "balance/CNY/alice") == b"asset/balance/CNY/alice"


def test_the_mirror_splits_keys_as_their_owner_does() -> None:
    (row,) = state_change_rows(7, {state_key("vault", "record/r-1"): None})
    assert row[:3] == ("vault", "record/r-1", 7)
