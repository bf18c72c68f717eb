"""The identifier patterns have one owner, consortia.types.primitives: every reader compiles or
annotates with the owner's pattern, and where two readers need different case rules (a
transaction hash as the chain shows it, a reference a banker typed), the difference is a flag
on the one pattern, tested here."""

from __future__ import annotations

import re

import msgspec
import pytest

from consortia.execution import contract
from consortia.gateway import protocol as gateway_protocol
from consortia.identity import certificates, keystore, requests
from consortia.net import tls
from consortia.privacy import envelope, escrow
from consortia.reconcile import books, chain, match
from consortia.types import genesis, primitives, transaction
from consortia.types.primitives import (
    ACCOUNT_ID_PATTERN,
    HASH_HEX_PATTERN,
    HEX_BYTES_PATTERN,
    AccountId,
)

HASH = "ab" * 32


def _pattern(annotated: object) -> str:
    """The `pattern` of an `Annotated[str, Meta(...)]` alias."""
    (meta,) = annotated.__metadata__  # type: ignore[attr-defined]
    return str(meta.pattern)


def test_every_reader_takes_the_owner_s_pattern() -> None:
    assert transaction.AccountId is AccountId
    assert requests.AccountId is AccountId
    assert genesis.GenesisAccount.__annotations__["id"] == "AccountId"
    assert books.ACCOUNT_ID.pattern == ACCOUNT_ID_PATTERN
    assert certificates._NODE_ID_HEX.pattern == HASH_HEX_PATTERN
    assert tls._NODE_ID_HEX.pattern == HASH_HEX_PATTERN
    assert chain.TX_HASH.pattern == HASH_HEX_PATTERN
    assert match.TX_HASH.pattern == HASH_HEX_PATTERN
    assert _pattern(genesis.HexHash) == HASH_HEX_PATTERN
    assert envelope._HEX.pattern == HEX_BYTES_PATTERN
    assert _pattern(escrow.HexText) == HEX_BYTES_PATTERN
    assert _pattern(keystore.HexBytes) == HEX_BYTES_PATTERN
    assert primitives.ACCOUNT_ID_LENGTH_MAX == 64


@pytest.mark.parametrize(
    ("account", "valid"),
    [
        ("alice", True),
        ("bank-0.treasury", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("contract:asset", False),
        ("alice\n", False),
        ("al ice", False),
    ],
)
def test_an_account_id_is_the_same_to_the_chain_and_to_the_books(account: str, valid: bool) -> None:
    try:
        msgspec.convert(account, AccountId)
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert decoded is valid
    assert (books.ACCOUNT_ID.match(account) is not None) is valid


def test_a_transaction_hash_is_lowercase_on_chain_either_case_in_the_books() -> None:
    # The node shows hashes in lowercase: an answer with another spelling is malformed.
    assert chain.TX_HASH.match(HASH)
    assert not chain.TX_HASH.match(HASH.upper())
    # A banker may type one in capitals: the books' reference is read in either case and
    # compared in the chain's spelling.
    assert match.TX_HASH.match(HASH.upper())
    assert match.normal_reference(HASH.upper()) == HASH
    assert match.normal_reference("PAY-000001") == "PAY-000001"
    assert match.normal_reference(HASH[:-2]) == HASH[:-2]
    assert match.TX_HASH.flags & re.IGNORECASE


@pytest.mark.parametrize(
    ("text", "valid"), [("00", True), ("0a1b", True), ("", False), ("abc", False), ("AB", False)]
)
def test_hex_bytes_are_whole_lowercase_bytes(text: str, valid: bool) -> None:
    assert (re.match(HEX_BYTES_PATTERN, text) is not None) is valid


def test_the_default_currency_and_its_pattern_have_one_owner() -> None:
    assert genesis.GenesisAccount(id="a", sponsor="m", public_key="00" * 32).currency == (
        primitives.CURRENCY_DEFAULT
    )
    assert contract.CURRENCY_DEFAULT == primitives.CURRENCY_DEFAULT
    for code, valid in (("CNY", True), ("USD", True), ("cny", False), ("A1B", False)):
        assert contract.is_currency(code) is valid
        assert (re.match(primitives.CURRENCY_PATTERN, code) is not None) is valid
    assert not contract.is_currency("CNY\n")
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert("ÄÖÜ", primitives.Currency)


def test_the_ids_contracts_create_have_one_character_set() -> None:
    # The contracts check characters against a set (they import no `re`); it is the pattern's.
    for character in map(chr, range(128)):
        assert (character in contract.ID_CHARACTERS) is bool(
            re.match(primitives.ID_PATTERN, character)
        ), character
    assert envelope._PARTY.pattern == primitives.ID_PATTERN
    assert gateway_protocol.ID_PATTERN.pattern == primitives.ID_PATTERN
